#include "schedulers/magcache.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace wanrt {

MagCacheMode parse_magcache_mode(std::string_view name) {
  if (name == "i2v") return MagCacheMode::I2V;
  if (name == "t2v") return MagCacheMode::T2V;
  if (name == "ti2v") return MagCacheMode::TI2V;
  fail("unknown MagCache mode '", name, "': expected 'i2v', 't2v' or 'ti2v'");
}

std::vector<int> nearest_interp_indices(int source_length, int target_length) {
  WANRT_CHECK(source_length >= 1 && target_length >= 1,
              "MagCache interpolation needs non-empty tables, got ", source_length, " -> ",
              target_length);
  if (target_length == 1) return {source_length - 1};
  // numpy: round(arange(m) * scale) with scale = (n − 1)/(m − 1); np.round ties to even,
  // as std::nearbyint does in the default rounding mode.
  const double scale =
      static_cast<double>(source_length - 1) / static_cast<double>(target_length - 1);
  std::vector<int> indices(static_cast<size_t>(target_length));
  for (int i = 0; i < target_length; ++i)
    indices[static_cast<size_t>(i)] = static_cast<int>(std::nearbyint(i * scale));
  return indices;
}

std::vector<double> mag_ratios_for_steps(std::span<const double> calibrated, int steps) {
  WANRT_CHECK(steps >= 1, "MagCache needs at least 1 sampling step, got ", steps);
  WANRT_CHECK(!calibrated.empty() && calibrated.size() % 2 == 0,
              "a MagCache ratio table needs an even, non-zero number of entries (cond and "
              "uncond per step), got ",
              calibrated.size());
  // Calls 0 and 1 have no earlier residual to compare with: their ratio is 1.
  std::vector<double> padded = {1.0, 1.0};
  padded.insert(padded.end(), calibrated.begin(), calibrated.end());
  const size_t num_calls = 2 * static_cast<size_t>(steps);
  if (padded.size() == num_calls) return padded;

  const int source_steps = static_cast<int>(padded.size() / 2);
  const std::vector<int> map = nearest_interp_indices(source_steps, steps);
  std::vector<double> resampled(num_calls);
  for (size_t i = 0; i < map.size(); ++i) {
    const size_t source = static_cast<size_t>(map[i]);
    resampled[2 * i] = padded[2 * source];          // cond
    resampled[2 * i + 1] = padded[2 * source + 1];  // uncond
  }
  return resampled;
}

MagCachePolicy::MagCachePolicy(std::span<const double> calibrated, int steps, int split_call,
                               MagCacheMode mode, MagCacheSettings settings)
    : ratios_(mag_ratios_for_steps(calibrated, steps)),
      num_calls_(2 * steps),
      split_call_(split_call),
      mode_(mode),
      settings_(settings) {
  WANRT_CHECK(split_call >= 0 && split_call <= num_calls_ && split_call % 2 == 0,
              "MagCache split call must be 2 x (high-noise steps), between 0 and ", num_calls_,
              ", got ", split_call);
  WANRT_CHECK(std::isfinite(settings.threshold) && settings.threshold >= 0,
              "--magcache_thresh must be a non-negative number, got ", settings.threshold);
  WANRT_CHECK(settings.max_skipped_calls >= 0, "--magcache_K must be non-negative, got ",
              settings.max_skipped_calls);
  WANRT_CHECK(settings.retention_ratio >= 0 && settings.retention_ratio <= 1,
              "--retention_ratio must lie in [0, 1], got ", settings.retention_ratio);
}

bool MagCachePolicy::always_computed(int call) const {
  const double num = num_calls_, split = split_call_, retention = settings_.retention_ratio;
  switch (mode_) {
    case MagCacheMode::I2V:  // every high-noise call, then a share R of the low-noise ones
      return call < static_cast<int>(split + (num - split) * retention);
    case MagCacheMode::T2V:  // a share R of each expert's calls (the second bound is not floored)
      return call < static_cast<int>(split * retention) ||
             (split <= call && call <= (num - split) * retention + split);
    case MagCacheMode::TI2V:
      return call < static_cast<int>(num * retention);
  }
  WANRT_ASSERT(false);
}

bool MagCachePolicy::decide() {
  const int call = call_;
  const int branch = call % 2;
  bool skip = false;
  if (!always_computed(call)) {
    accumulated_ratio_[branch] *= ratios_[static_cast<size_t>(call)];
    accumulated_calls_[branch] += 1;
    accumulated_error_[branch] += std::fabs(1.0 - accumulated_ratio_[branch]);
    // The reference would add a missing residual (and crash) when a branch is cache-eligible
    // before its first full compute; we compute it instead.
    if (accumulated_error_[branch] < settings_.threshold &&
        accumulated_calls_[branch] <= settings_.max_skipped_calls && has_residual_[branch]) {
      skip = true;
    } else {  // full compute: accumulation restarts from it
      accumulated_error_[branch] = 0.0;
      accumulated_calls_[branch] = 0;
      accumulated_ratio_[branch] = 1.0;
    }
  }
  if (!skip) has_residual_[branch] = true;
  if (++call_ >= num_calls_) reset();
  return skip;
}

void MagCachePolicy::reset() {
  call_ = 0;
  for (int branch = 0; branch < 2; ++branch) {
    accumulated_ratio_[branch] = 1.0;
    accumulated_error_[branch] = 0.0;
    accumulated_calls_[branch] = 0;
    // Unlike the reference, a new video never reuses the previous video's residuals.
    has_residual_[branch] = false;
  }
}

// ---- tables ----

std::string_view mag_ratio_file_name(MagRatioTable table) {
  switch (table) {
    case MagRatioTable::I2V_A14B: return "i2v-A14B.json";
    case MagRatioTable::T2V_A14B: return "t2v-A14B.json";
    case MagRatioTable::TI2V_5B_T2V: return "ti2v-5B-t2v.json";
    case MagRatioTable::TI2V_5B_I2V: return "ti2v-5B-i2v.json";
  }
  WANRT_ASSERT(false);
}

std::vector<double> load_mag_ratios(const std::string& path) {
  std::ifstream in(path);
  WANRT_CHECK(in.good(), "MagCache ratio table ", path, ": cannot open the file");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("MagCache ratio table ", path, ": not valid JSON (", e.what(), ")");
  }
  WANRT_CHECK(doc.is_object() && doc.contains("ratios") && doc["ratios"].is_array(),
              "MagCache ratio table ", path, ": expected an object with a \"ratios\" array");
  std::vector<double> ratios;
  for (const auto& entry : doc["ratios"]) {
    WANRT_CHECK(entry.is_number(), "MagCache ratio table ", path, ": entry ", ratios.size(),
                " is not a number");
    const double value = entry.get<double>();
    WANRT_CHECK(std::isfinite(value) && value > 0, "MagCache ratio table ", path, ": entry ",
                ratios.size(), " is ", value, "; ratios must be positive");
    ratios.push_back(value);
  }
  WANRT_CHECK(!ratios.empty() && ratios.size() % 2 == 0, "MagCache ratio table ", path,
              ": needs an even, non-zero number of ratios (cond and uncond per step), has ",
              ratios.size());
  if (doc.contains("calibrated_steps")) {
    const auto& steps = doc["calibrated_steps"];
    WANRT_CHECK(steps.is_number_integer() &&
                    ratios.size() + 2 == 2 * steps.get<size_t>(),
                "MagCache ratio table ", path, ": \"calibrated_steps\" ", steps.dump(),
                " needs 2 x steps - 2 ratios, the file has ", ratios.size());
  }
  return ratios;
}

void save_mag_ratios(const std::string& path, const std::vector<double>& ratios,
                     const std::string& model, const std::string& source) {
  WANRT_CHECK(!ratios.empty() && ratios.size() % 2 == 0, "MagCache ratio table ", path,
              ": needs an even, non-zero number of ratios (cond and uncond per step), got ",
              ratios.size());
  for (size_t j = 0; j < ratios.size(); ++j)
    WANRT_CHECK(std::isfinite(ratios[j]) && ratios[j] > 0, "MagCache ratio table ", path,
                ": ratio ", j, " is ", ratios[j], "; ratios must be positive");
  // Written by hand rather than through nlohmann::json::dump so the file reads like the
  // shipped tables: the metadata first, then ten ratios a line.
  std::ostringstream text;
  text << "{\n"
       << "  \"model\": " << nlohmann::json(model).dump() << ",\n"
       << "  \"source\": " << nlohmann::json(source).dump() << ",\n"
       << "  \"calibrated_steps\": " << ratios.size() / 2 + 1 << ",\n"
       << "  \"layout\": \"entry j is the magnitude ratio of DiT call j + 2: step (j + 2) / 2, "
          "cond for even j, uncond for odd j\",\n"
       << "  \"ratios\": [";
  char number[32];
  for (size_t j = 0; j < ratios.size(); ++j) {
    // Six decimals: one more than the published tables, far below run-to-run noise.
    std::snprintf(number, sizeof number, "%.6f", ratios[j]);
    text << (j % 10 == 0 ? "\n    " : " ") << number << (j + 1 < ratios.size() ? "," : "");
  }
  text << "\n  ]\n}\n";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  WANRT_CHECK(out.good(), "MagCache ratio table ", path, ": cannot create the file");
  out << text.str();
  out.close();
  WANRT_CHECK(out.good(), "MagCache ratio table ", path, ": writing failed (disk full?)");
}

std::string default_magcache_dir() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back(exe.parent_path() / ".." / "share" / "wanrt" / "magcache");
    candidates.push_back(exe.parent_path() / ".." / ".." / "data" / "magcache");
  }
#ifdef WANRT_DATA_DIR
  candidates.push_back(fs::path(WANRT_DATA_DIR) / "magcache");
#endif
  std::ostringstream tried;
  for (const fs::path& candidate : candidates) {
    if (fs::is_directory(candidate, error)) return fs::weakly_canonical(candidate).string();
    tried << "\n  " << candidate.string();
  }
  fail("cannot find the MagCache ratio tables (data/magcache); looked in:", tried.str());
}

std::vector<double> load_default_mag_ratios(MagRatioTable table) {
  return load_mag_ratios(default_magcache_dir() + "/" + std::string(mag_ratio_file_name(table)));
}

}  // namespace wanrt
