// `wanrt quantize --ckpt_dir DIR --quantize int8|fp8 --out NEW_DIR`: writes a checkpoint whose
// two experts hold weight-only quantized block linear layers (codes + per-row scales, the
// scheme in the file's metadata; io/quantized_checkpoint.h), so `wanrt generate --ckpt_dir
// NEW_DIR` starts without quantizing at load. The text encoder, VAE and tokenizer are linked.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/generate_args.h"
#include "core/error.h"
#include "io/quantized_checkpoint.h"

namespace wanrt::cli {
namespace {

namespace fs = std::filesystem;

struct QuantizeOptions {
  std::string ckpt_dir;
  std::string quantize;
  std::string out;
};

std::string fixed(double value, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

int run_quantize(const QuantizeOptions& options) {
  const Quantization quantization = parse_quantize("--quantize", options.quantize);
  WANRT_CHECK(quantization != Quantization::None, "--quantize ", options.quantize,
              ": nothing to do; choose int8 or fp8 (True means int8)");
  std::error_code ec;
  WANRT_CHECK(fs::is_directory(options.ckpt_dir, ec), "--ckpt_dir ", options.ckpt_dir,
              ": no such folder");
  WANRT_CHECK(!fs::exists(options.out, ec) ||
                  (fs::is_directory(options.out, ec) && fs::is_empty(options.out, ec)),
              "--out ", options.out, ": exists and is not an empty folder; give a new folder");
  const auto start = std::chrono::steady_clock::now();
  std::vector<QuantizedExpertSummary> experts;
  try {
    experts = write_quantized_checkpoint(options.ckpt_dir, options.out, quantization,
                                         [](const std::string& line) { std::cout << line << std::endl; });
  } catch (const fs::filesystem_error& e) {
    fail("--out ", options.out, ": cannot write the quantized checkpoint (", e.code().message(),
         ": ", e.path1().string(), ")");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const QuantizedExpertSummary& expert : experts) {
    const int64_t total = expert.quantized_parameters + expert.float_parameters;
    std::cout << expert.name << ": " << expert.quantized_tensors << " weights ("
              << expert.quantized_parameters << " of " << total << " parameters, "
              << fixed(100.0 * static_cast<double>(expert.quantized_parameters) / static_cast<double>(total), 1)
              << "%) as " << quantization_name(quantization) << " codes + per-row scales -> "
              << expert.path << " (" << fixed(static_cast<double>(expert.bytes) / 1e9, 3) << " GB)\n";
  }
  std::cout << "Wrote " << options.out << " in " << format_duration(seconds) << "; run it with\n"
            << "  wanrt generate --ckpt_dir " << options.out << " ...\n";
  return 0;
}

}  // namespace

Subcommand add_quantize_command(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  CLI::App* command = app.add_subcommand(
      "quantize",
      "Write a copy of a checkpoint whose DiT experts hold int8 or fp8 weight-only quantized "
      "block linear layers (per-output-channel scales), for `wanrt generate`");
  command->add_option("--ckpt_dir", options->ckpt_dir,
                      "the float checkpoint (Wan-AI/Wan2.2-I2V-A14B layout)")
      ->required();
  command->add_option("--quantize", options->quantize, "int8 or fp8 (True means int8)")->required();
  command->add_option("--out", options->out,
                      "new folder for the quantized checkpoint (text encoder, VAE and tokenizer "
                      "are symbolic links to the source files)")
      ->required();
  return {command, [options] { return run_quantize(*options); }};
}

}  // namespace wanrt::cli
