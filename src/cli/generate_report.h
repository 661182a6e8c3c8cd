// What `wanrt generate` shows while it runs: the denoising progress bar and the timing summary.
#pragma once

#include <ostream>
#include <string>

#include "pipeline/i2v_pipeline.h"

namespace wanrt::cli {

// One line per denoising step: bar, step k/N, the expert that ran, s/step and ETA. On a
// terminal the line is redrawn in place (\r); elsewhere (logs, pipes) every step gets its own
// line, so a log file shows the whole run.
class DenoiseProgressBar {
 public:
  DenoiseProgressBar(std::ostream& out, bool redraw);
  void update(const DenoiseProgress& progress);
  // Ends the redrawn line (no-op when nothing was drawn or not redrawing).
  void finish();

 private:
  std::ostream& out_;
  bool redraw_;
  size_t last_width_ = 0;
  bool open_line_ = false;
};

// The text of one progress line (no newline, no \r).
std::string format_progress_line(const DenoiseProgress& progress);

// The timing table by stage, with the total; `steps` gives the denoise line its s/step.
void print_timing_summary(std::ostream& out, const StageTimes& times, int steps);

}  // namespace wanrt::cli
