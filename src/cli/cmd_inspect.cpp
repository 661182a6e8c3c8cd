// `wanrt inspect CKPT_DIR [--json]`: what a checkpoint folder holds, what is missing and what
// to do about it, and the GPU memory its weights need at each weight precision.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/inspect_report.h"
#include "core/error.h"

namespace wanrt::cli {
namespace {

struct InspectOptions {
  std::string root;
  bool json = false;
};

constexpr const char* kMemoryRule =
    "bf16: 2 bytes per parameter. int8 / fp8 weight-only (--quantize): 1 byte per element of\n"
    "each linear weight of the DiT blocks (attention q/k/v/o, FFN) plus a 4-byte scale per\n"
    "output row; everything else (the DiT's patch, text and time embeddings and head, biases,\n"
    "norms, modulation, the text encoder, the VAE) stays bf16.\n"
    "Weights only: activations, attention workspace and the latents come on top.";

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  for (int64_t i = static_cast<int64_t>(digits.size()) - 3; i > 0; i -= 3)
    digits.insert(static_cast<size_t>(i), ",");
  return value < 0 ? "-" + digits : digits;
}

// Decimal units, as disk and GPU sizes are quoted (28.58 GB for one A14B expert in bf16).
std::string human_bytes(uint64_t bytes) {
  const double value = static_cast<double>(bytes);
  char text[32];
  if (bytes < 1000)
    std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
  else if (value < 1e6)
    std::snprintf(text, sizeof text, "%.2f kB", value / 1e3);
  else if (value < 1e9)
    std::snprintf(text, sizeof text, "%.2f MB", value / 1e6);
  else
    std::snprintf(text, sizeof text, "%.2f GB", value / 1e9);
  return text;
}

// "key value, key value, ..." wrapped under an indented label.
void print_pairs(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& pairs) {
  constexpr size_t kWidth = 96;
  std::string line = "  config      ";
  const std::string indent(14, ' ');
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string item = pairs[i].first + " " + pairs[i].second + (i + 1 < pairs.size() ? "," : "");
    if (line.size() + item.size() + 1 > kWidth && line.size() > indent.size()) {
      out << line << "\n";
      line = indent;
    }
    line += (line.size() > indent.size() ? " " : "") + item;
  }
  out << line << "\n";
}

void print_component(std::ostream& out, const ComponentReport& c) {
  const char* status = c.valid                          ? "OK"
                       : !c.error.empty()               ? "INVALID (see problems below)"
                       : c.present || !c.config.empty() ? "INCOMPLETE (see missing below)"
                                                        : "NOT FOUND";
  out << "\n" << c.title << ": " << status << "\n";
  if (c.present)
    out << "  source      " << c.source << "\n              " << c.format << ", " << c.file_count
        << (c.file_count == 1 ? " file, " : " files, ") << human_bytes(c.bytes_on_disk)
        << " on disk\n";
  if (!c.config.empty()) print_pairs(out, c.config);
  if (c.tensor_count > 0) {
    out << "  tensors     " << c.tensor_count << " (";
    bool first = true;
    for (const auto& [dtype, count] : c.dtype_counts) {
      out << (first ? "" : ", ") << dtype << " " << count;
      first = false;
    }
    out << ")\n";
  }
  if (c.parameters > 0) out << "  parameters  " << with_commas(c.parameters) << "\n";
}

void print_memory(std::ostream& out, const InspectReport& report) {
  const ComponentReport* parts[] = {&report.high_noise, &report.low_noise, &report.t5,
                                    &report.vae};
  out << "\nGPU memory for the weights (1 GB = 10^9 bytes):\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-46s %14s %14s %14s\n", "", "bf16", "int8", "fp8");
  out << line;
  WeightMemory total;
  uint64_t largest_expert_bf16 = 0, largest_expert_int8 = 0;
  bool all_known = true;
  for (const ComponentReport* part : parts) {
    if (!part->memory_known) {
      all_known = false;
      std::snprintf(line, sizeof line, "  %-46s %14s\n", part->title.c_str(), "(unknown)");
      out << line;
      continue;
    }
    total.bf16 += part->memory.bf16;
    total.int8 += part->memory.int8;
    if (part == &report.high_noise || part == &report.low_noise) {
      largest_expert_bf16 = std::max(largest_expert_bf16, part->memory.bf16);
      largest_expert_int8 = std::max(largest_expert_int8, part->memory.int8);
    }
    std::snprintf(line, sizeof line, "  %-46s %14s %14s %14s\n", part->title.c_str(),
                  human_bytes(part->memory.bf16).c_str(), human_bytes(part->memory.int8).c_str(),
                  human_bytes(part->memory.int8).c_str());
    out << line;
  }
  const char* qualifier = all_known ? "" : " (known parts)";
  std::snprintf(line, sizeof line, "  %-46s %14s %14s %14s\n",
                str_cat("both experts resident + T5 + VAE", qualifier).c_str(),
                human_bytes(total.bf16).c_str(), human_bytes(total.int8).c_str(),
                human_bytes(total.int8).c_str());
  out << line;
  const uint64_t one_bf16 = total.bf16 - report.high_noise.memory.bf16 -
                            report.low_noise.memory.bf16 + largest_expert_bf16;
  const uint64_t one_int8 = total.int8 - report.high_noise.memory.int8 -
                            report.low_noise.memory.int8 + largest_expert_int8;
  std::snprintf(line, sizeof line, "  %-46s %14s %14s %14s\n",
                str_cat("one expert at a time + T5 + VAE", qualifier).c_str(),
                human_bytes(one_bf16).c_str(), human_bytes(one_int8).c_str(),
                human_bytes(one_int8).c_str());
  out << line << kMemoryRule << "\n";
}

void print_text(std::ostream& out, const InspectReport& report) {
  const CheckpointLayout& layout = report.layout;
  out << "Checkpoint  " << layout.root << "\n";
  if (layout.random_demo)
    out << "Weights     RANDOM (README.txt marks a wanrt demo checkpoint): for testing the engine;"
           " generated videos are noise by design\n";
  else
    out << "Weights     not marked as random demo weights\n";
  for (const ComponentReport* part :
       {&report.high_noise, &report.low_noise, &report.t5, &report.vae})
    print_component(out, *part);
  out << "\ntokenizer: ";
  if (layout.tokenizer_model.empty())
    out << "NOT FOUND\n";
  else
    out << "found\n  source      " << layout.tokenizer_model << "\n"
        << (report.tokenizer.empty() ? "" : "  vocabulary  " + report.tokenizer + "\n");

  if (!layout.notes.empty()) {
    out << "\nNotes:\n";
    for (const std::string& note : layout.notes) out << "  - " << note << "\n";
  }
  if (!layout.missing.empty()) {
    out << "\nMissing:\n";
    for (const MissingPart& part : layout.missing)
      out << "  - " << part.what << ": " << part.expected_path << "\n      -> " << part.hint << "\n";
  }
  std::vector<std::string> problems;
  for (const ComponentReport* part :
       {&report.high_noise, &report.low_noise, &report.t5, &report.vae})
    if (!part->error.empty()) problems.push_back(part->error);
  problems.insert(problems.end(), report.warnings.begin(), report.warnings.end());
  if (!problems.empty()) {
    out << "\nProblems:\n";
    for (const std::string& problem : problems) out << "  - " << problem << "\n";
  }
  print_memory(out, report);
  out << "\nResult: "
      << (report.ok() ? "complete and consistent" : "NOT usable as it is (see above)")
      << (layout.random_demo ? "; RANDOM demo weights" : "") << "\n";
}

nlohmann::json component_json(const ComponentReport& c) {
  nlohmann::json json = {{"present", c.present}, {"valid", c.valid}};
  if (!c.error.empty()) json["error"] = c.error;
  if (c.present) {
    json["source"] = c.source;
    json["format"] = c.format;
    json["files"] = c.file_count;
    json["bytes_on_disk"] = c.bytes_on_disk;
  }
  if (c.tensor_count > 0) {
    json["tensors"] = c.tensor_count;
    json["dtypes"] = c.dtype_counts;
  }
  if (c.parameters > 0) json["parameters"] = c.parameters;
  nlohmann::json config = nlohmann::json::object();
  for (const auto& [key, value] : c.config) config[key] = value;
  json["config"] = std::move(config);
  if (c.memory_known)
    json["weight_memory_bytes"] = {{"bf16", c.memory.bf16}, {"int8", c.memory.int8},
                                   {"fp8", c.memory.int8}};
  return json;
}

nlohmann::json report_json(const InspectReport& report) {
  const CheckpointLayout& layout = report.layout;
  nlohmann::json missing = nlohmann::json::array();
  for (const MissingPart& part : layout.missing)
    missing.push_back({{"what", part.what}, {"path", part.expected_path}, {"hint", part.hint}});
  return {{"root", layout.root},
          {"random_demo", layout.random_demo},
          {"complete", layout.complete()},
          {"ok", report.ok()},
          {"high_noise_model", component_json(report.high_noise)},
          {"low_noise_model", component_json(report.low_noise)},
          {"t5", component_json(report.t5)},
          {"vae", component_json(report.vae)},
          {"tokenizer", {{"path", layout.tokenizer_model}, {"summary", report.tokenizer}}},
          {"missing", missing},
          {"notes", layout.notes},
          {"warnings", report.warnings},
          {"weight_memory_rule", kMemoryRule}};
}

int run_inspect(const InspectOptions& options) {
  const InspectReport report = inspect_checkpoint(options.root);
  if (options.json)
    std::cout << report_json(report).dump(2) << "\n";
  else
    print_text(std::cout, report);
  std::cout.flush();
  if (report.ok()) return 0;
  std::cerr << "wanrt: error: " << options.root
            << ": the checkpoint is incomplete or inconsistent (details above)\n";
  return 1;
}

}  // namespace

Subcommand add_inspect_command(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* command = app.add_subcommand(
      "inspect", "Show what a checkpoint folder holds, what is missing, and the GPU memory its "
                 "weights need");
  command->add_option("CKPT_DIR", options->root,
                      "checkpoint folder in the Wan-AI/Wan2.2-I2V-A14B layout")
      ->required();
  command->add_flag("--json", options->json, "print the report as JSON");
  return {command, [options] { return run_inspect(*options); }};
}

}  // namespace wanrt::cli
