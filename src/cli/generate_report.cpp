#include "cli/generate_report.h"

#include <algorithm>
#include <cstdio>

#include "cli/generate_args.h"

namespace wanrt::cli {
namespace {

constexpr int kBarWidth = 24;

}  // namespace

std::string format_progress_line(const DenoiseProgress& progress) {
  const int done = std::clamp(progress.step + 1, 0, std::max(progress.steps, 1));
  const int total = std::max(progress.steps, 1);
  const int filled = done * kBarWidth / total;
  const std::string bar = std::string(static_cast<size_t>(filled), '#') +
                          std::string(static_cast<size_t>(kBarWidth - filled), '.');
  // The mean over the steps so far: a single step's time jumps when the experts switch.
  const double seconds_per_step = progress.elapsed_seconds / done;
  const double remaining = seconds_per_step * (total - done);
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.2f s/step", seconds_per_step);
  // MagCache: which of the step's two calls were answered from the cache.
  const char* cached = progress.cond_skipped && progress.uncond_skipped ? "  cached: cond+uncond"
                       : progress.cond_skipped                          ? "  cached: cond"
                       : progress.uncond_skipped                        ? "  cached: uncond"
                                                                        : "";
  return str_cat("denoise [", bar, "] step ", done, "/", total, "  t=", progress.timestep, "  ",
                 progress.high_noise ? "high" : "low", "-noise expert  ", rate, "  ",
                 done == total ? "done in " + format_duration(progress.elapsed_seconds)
                               : "ETA " + format_duration(remaining),
                 cached);
}

DenoiseProgressBar::DenoiseProgressBar(std::ostream& out, bool redraw)
    : out_(out), redraw_(redraw) {}

void DenoiseProgressBar::update(const DenoiseProgress& progress) {
  const std::string line = format_progress_line(progress);
  if (redraw_) {
    // Blank out what is left of a longer previous line (the ETA text shrinks).
    const size_t padding = last_width_ > line.size() ? last_width_ - line.size() : 0;
    out_ << '\r' << line << std::string(padding, ' ');
    last_width_ = line.size();
    open_line_ = true;
  } else {
    out_ << line << '\n';
  }
  out_.flush();
}

void DenoiseProgressBar::finish() {
  if (open_line_) out_ << '\n';
  open_line_ = false;
  out_.flush();
}

void print_timing_summary(std::ostream& out, const StageTimes& times, const RunFacts& facts) {
  const double total = times.load + times.text + times.vae_encode + times.denoise +
                       times.vae_decode + times.write + times.offload;
  const auto row = [&](const char* stage, double seconds, const std::string& note = {}) {
    char text[96];
    std::snprintf(text, sizeof text, "  %-11s %10.3f s %5.1f %%", stage, seconds,
                  total > 0 ? 100.0 * seconds / total : 0.0);
    out << text << (note.empty() ? "" : "  " + note) << "\n";
  };
  out << "Timing by stage:\n";
  row("load", times.load, "checkpoint: experts, T5, VAE, tokenizer");
  row("text", times.text, "umT5 on prompt and negative prompt");
  row("VAE encode", times.vae_encode);
  char rate[64];
  std::snprintf(rate, sizeof rate, "%d steps, %.3f s/step", facts.steps,
                facts.steps > 0 ? times.denoise / facts.steps : 0.0);
  const DitCallStats& calls = facts.dit_calls;
  row("denoise", times.denoise,
      str_cat(rate, ", ", calls.total(), " DiT calls: ", calls.computed, " computed, ",
              calls.skipped, " skipped", facts.magcache ? " (MagCache)" : ""));
  if (times.offload > 0)
    row("offload", times.offload, "bringing offloaded weights back to the device");
  row("VAE decode", times.vae_decode);
  row("write", times.write, "video file (and --save_latent)");
  char line[64];
  std::snprintf(line, sizeof line, "  %-11s %10.3f s", "total", total);
  out << line << "\n";
  if (!facts.memory.empty()) out << "  " << facts.memory << "\n";
}

}  // namespace wanrt::cli
