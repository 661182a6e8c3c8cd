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

// What the summary says beside the stage times.
struct RunFacts {
  int steps = 0;              // gives the denoise line its s/step
  DitCallStats dit_calls;     // computed vs skipped DiT calls
  bool magcache = false;      // --use_magcache was on (the skips are MagCache's)
  std::string memory;         // the peak device memory line; empty: not on a GPU
};

// The timing table by stage, with the total, the DiT calls computed and skipped, and the
// peak device memory where there is one.
void print_timing_summary(std::ostream& out, const StageTimes& times, const RunFacts& facts);

}  // namespace wanrt::cli
