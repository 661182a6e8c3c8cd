// `wanrt make-demo-checkpoint DIR [--seed N] [--force] [--full-size]`: a tiny random-weight
// checkpoint in the real layout, for testing the engine without the 126 GB download, and an
// example input image (DIR/example.png) to try `wanrt generate` with. --full-size writes the
// real sizes instead (~40 GB, random weights), so benchmarks measure the real loading path.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/demo_checkpoint.h"
#include "io/image.h"

namespace wanrt::cli {
namespace {

namespace fs = std::filesystem;

// The example input image a demo checkpoint comes with, so `wanrt generate` can be tried
// without bringing a picture: a procedural scene (sky gradient, sun, striped ground), 4:3 for
// the tiny demo, 832x480 (the official 480p landscape size) for the full-size checkpoint.
constexpr const char* kExampleImageName = "example.png";
constexpr int64_t kExampleWidth = 160, kExampleHeight = 120;
constexpr int64_t kFullSizeExampleWidth = 832, kFullSizeExampleHeight = 480;

std::vector<uint8_t> example_image_pixels(int64_t width, int64_t height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width * height * 3));
  const auto byte = [](double value) {
    return static_cast<uint8_t>(std::clamp(value, 0.0, 255.0));
  };
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / static_cast<double>(width);
      const double v = static_cast<double>(y) / static_cast<double>(height);
      double r = 90 + 100 * v, g = 150 + 60 * v, b = 235 - 40 * v;  // sky
      if (std::hypot(u - 0.72, v - 0.28) < 0.12) r = 250, g = 210, b = 60;  // sun
      if (v > 0.62) {  // ground, with stripes that converge towards the horizon
        const double stripe = std::sin(40.0 * (u - 0.5) / (v - 0.55));
        r = 60 + 30 * stripe, g = 140 + 40 * stripe, b = 60;
      }
      uint8_t* pixel = &rgb[static_cast<size_t>((y * width + x) * 3)];
      pixel[0] = byte(r), pixel[1] = byte(g), pixel[2] = byte(b);
    }
  return rgb;
}

struct MakeDemoOptions {
  std::string dir;
  uint64_t seed = 0;
  bool force = false;
  bool full_size = false;
};

int make_demo(const MakeDemoOptions& options) {
  std::error_code ec;
  if (fs::exists(options.dir, ec)) {
    WANRT_CHECK(fs::is_directory(options.dir, ec), options.dir,
                ": exists and is not a folder; give a new or empty folder");
    const bool empty = fs::is_empty(options.dir, ec);
    WANRT_CHECK(!ec, options.dir, ": cannot read the folder (", ec.message(), ")");
    WANRT_CHECK(empty || options.force, options.dir,
                ": the folder is not empty; choose an empty folder, or pass --force to replace "
                "an earlier demo checkpoint there");
    if (!empty) {
      // --force empties the folder, so no stale file of an earlier layout (an old single-file
      // expert, say) survives next to the new files; but only a folder that is itself a demo
      // checkpoint, so a mistyped path can never delete real weights or anything else.
      WANRT_CHECK(resolve_checkpoint(options.dir).random_demo, options.dir,
                  ": --force only replaces a demo checkpoint written by wanrt (its README.txt "
                  "says RANDOM WEIGHTS), and this folder is not one; choose another folder, or "
                  "empty this one yourself");
      for (const auto& entry : fs::directory_iterator(options.dir)) fs::remove_all(entry.path());
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (options.full_size) {
    write_full_size_checkpoint(options.dir, options.seed,
                               [](const std::string& line) { std::cout << line << std::endl; });
  } else {
    write_demo_checkpoint(options.dir, options.seed);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.full_size) {
    char size[32];
    std::snprintf(size, sizeof size, "%.1f GB", static_cast<double>(full_size_spec().bytes()) / 1e9);
    std::cout << "Wrote a FULL-SIZE checkpoint to " << options.dir << " (seed " << options.seed
              << ", " << size << ", " << static_cast<int>(seconds) << " s).\n"
              << "Its weights are RANDOM: it is for measuring the engine at the real sizes, and "
                 "generated videos are noise by design.\n"
              << "Both experts have the same weights: " << kLowNoiseFolder
              << "/ links to the shards of " << kHighNoiseFolder
              << "/, so a loader reads and uploads them twice (the second read may come from the "
                 "page cache).\n"
              << "Run `wanrt inspect " << options.dir << "` to see what it holds.\n";
  } else {
    std::cout << "Wrote a demo checkpoint to " << options.dir << " (seed " << options.seed << ", "
              << static_cast<int>(seconds * 1000) << " ms).\n"
              << "Its weights are RANDOM: it is for testing the engine, and generated videos are "
                 "noise by design.\n"
              << "Run `wanrt inspect " << options.dir << "` to see what it holds.\n";
  }
  if (have_png_support()) {
    const std::string image = (fs::path(options.dir) / kExampleImageName).string();
    const int64_t width = options.full_size ? kFullSizeExampleWidth : kExampleWidth;
    const int64_t height = options.full_size ? kFullSizeExampleHeight : kExampleHeight;
    write_png(image, example_image_pixels(width, height), width, height);
    std::cout << "Wrote an example input image, " << image << "; try\n  wanrt generate --ckpt_dir "
              << options.dir << " --image " << image
              << (options.full_size ? " --prompt \"a sunny field\" --size 832*480 --frame_num 81\n"
                                    : " --prompt \"a sunny field\" --size 128*96 --frame_num 5 "
                                      "--sample_steps 4\n");
  } else {
    std::cout << "Note: this wanrt was built without libpng, so no example image was written.\n";
  }
#ifndef WANRT_HAVE_SENTENCEPIECE
  std::cout << "Note: this wanrt was built without SentencePiece, so the demo has no tokenizer "
               "(google/umt5-xxl/spiece.model).\n";
#endif
  return 0;
}

int run_make_demo(const MakeDemoOptions& options) {
  try {
    return make_demo(options);
  } catch (const fs::filesystem_error& e) {
    // Permissions, read-only disks, ...: said in the user's terms, with the path.
    fail(options.dir, ": cannot write the demo checkpoint (", e.code().message(), ": ",
         e.path1().string(), ")");
  }
}

}  // namespace

Subcommand add_make_demo_command(CLI::App& app) {
  auto options = std::make_shared<MakeDemoOptions>();
  CLI::App* command = app.add_subcommand(
      "make-demo-checkpoint",
      "Write a tiny (or, with --full-size, full-size) RANDOM-weight checkpoint in the "
      "Wan2.2-I2V-A14B layout, for testing and benchmarks");
  command->add_option("DIR", options->dir, "folder to write (created if missing)")->required();
  command->add_option("--seed", options->seed, "random seed of the weights (default 0)");
  command->add_flag("--force", options->force,
                    "replace an earlier demo checkpoint in DIR (other folders are never emptied)");
  command->add_flag("--full-size", options->full_size,
                    "the real I2V-A14B sizes instead of tiny ones (~40 GB of random weights: one "
                    "bf16 expert whose shards the other expert links to, umT5-XXL, the VAE), for "
                    "benchmarks");
  return {command, [options] { return run_make_demo(*options); }};
}

}  // namespace wanrt::cli
