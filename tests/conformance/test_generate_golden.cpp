// `wanrt generate` end to end on the tiny golden checkpoint (golden/Wan2.2-I2V-tiny), through
// the program itself (WANRT_PROGRAM): the written video's frame count, size and fps (the AVI
// parsed here, MP4 through ffprobe where it exists), the official final latent reproduced from
// the golden noise (--noise_file, --save_latent), and determinism (same noise file, same bits;
// another seed, another latent).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "pipeline/i2v_pipeline.h"
#include "test_support.h"

#ifndef WANRT_PROGRAM
#error "WANRT_PROGRAM (the wanrt binary) must be defined by the build"
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;

// ---- running the program ----

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct RunResult {
  int status = -1;
  std::string out, err;
};

RunResult run_generate(const std::vector<std::string>& args) {
  static int run_index = 0;
  const fs::path folder = testing::temp_dir();
  const fs::path out = folder / ("stdout_" + std::to_string(run_index) + ".txt");
  const fs::path err = folder / ("stderr_" + std::to_string(run_index++) + ".txt");
  // The float32 CPU reference: the golden tolerances are float32 ones, and `auto` would pick
  // the (bf16) CUDA backend on a machine with a GPU.
  std::string command = quoted(WANRT_PROGRAM) + " generate --backend cpu";
  for (const std::string& arg : args) command += " " + quoted(arg);
  command += " >" + quoted(out.string()) + " 2>" + quoted(err.string());
  const int raw = std::system(command.c_str());
  RunResult result;
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  result.out = read_text(out);
  result.err = read_text(err);
  return result;
}

// The path of "Saved PATH: N frames, WxH, F fps, ..." (the last line of a successful run).
std::string written_video(const RunResult& run) {
  std::smatch match;
  static const std::regex saved(R"(\nSaved (.+): [0-9]+ frames, [0-9]+x[0-9]+, [0-9]+ fps)");
  if (!std::regex_search(run.out, match, saved)) return "";
  return match[1].str();
}

// ---- a small AVI header reader: avih (frames, size) and the video strh (rate/scale) ----

struct AviHeader {
  uint32_t micro_seconds_per_frame = 0, total_frames = 0, width = 0, height = 0;
  uint32_t scale = 0, rate = 0, length = 0;
  std::string stream_type, compression;
  int video_chunks = 0;
};

uint32_t le32(const std::vector<uint8_t>& bytes, size_t at) {
  return uint32_t{bytes.at(at)} | uint32_t{bytes.at(at + 1)} << 8 |
         uint32_t{bytes.at(at + 2)} << 16 | uint32_t{bytes.at(at + 3)} << 24;
}
std::string fourcc(const std::vector<uint8_t>& bytes, size_t at) {
  return {reinterpret_cast<const char*>(&bytes.at(at)), 4};
}

void walk_chunks(const std::vector<uint8_t>& bytes, size_t begin, size_t end, AviHeader& header) {
  for (size_t at = begin; at + 8 <= end;) {
    const std::string id = fourcc(bytes, at);
    const size_t body = at + 8, size = le32(bytes, at + 4);
    if (body + size > end) throw std::runtime_error("AVI chunk " + id + " overruns its parent");
    if (id == "LIST") {
      walk_chunks(bytes, body + 4, body + size, header);
    } else if (id == "avih") {
      header.micro_seconds_per_frame = le32(bytes, body);
      header.total_frames = le32(bytes, body + 16);
      header.width = le32(bytes, body + 32);
      header.height = le32(bytes, body + 36);
    } else if (id == "strh") {
      header.stream_type = fourcc(bytes, body);
      header.scale = le32(bytes, body + 20);
      header.rate = le32(bytes, body + 24);
      header.length = le32(bytes, body + 32);
    } else if (id == "strf") {
      header.compression = fourcc(bytes, body + 16);
    } else if (id == "00dc") {
      ++header.video_chunks;
    }
    at = body + size + size % 2;  // chunks are padded to even sizes
  }
}

AviHeader read_avi_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (bytes.size() < 12 || fourcc(bytes, 0) != "RIFF" || fourcc(bytes, 8) != "AVI ")
    throw std::runtime_error(path + " is not a RIFF AVI file");
  AviHeader header;
  walk_chunks(bytes, 12, bytes.size(), header);
  return header;
}

bool have_program(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// ffprobe's key=value description of the first video stream, frames counted by decoding.
std::map<std::string, std::string> ffprobe_stream(const std::string& path) {
  const std::string command =
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=width,height,r_frame_rate,nb_read_frames -of default=noprint_wrappers=1 " +
      quoted(path);
  std::map<std::string, std::string> values;
  std::string text;
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[512];
    while (std::fgets(buffer, sizeof buffer, pipe)) text += buffer;
    pclose(pipe);
  }
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (const size_t equals = line.find('='); equals != std::string::npos)
      values[line.substr(0, equals)] = line.substr(equals + 1);
  return values;
}

// ---- the golden cases ----

struct GoldenCase {
  std::string name;
  nlohmann::json meta;
  std::string tensors_path, image_path;
};

GoldenCase golden_case(const std::string& golden, const std::string& name) {
  GoldenCase c;
  c.name = name;
  c.tensors_path = (fs::path(golden) / "e2e" / (name + ".safetensors")).string();
  c.image_path = (fs::path(golden) / "e2e" / (name + "_input.png")).string();
  c.meta = nlohmann::json::parse(read_safetensors(c.tensors_path).metadata.at("meta"));
  return c;
}

// The flags that reproduce a golden case; --size W*H is any pair with the case's max_area
// (only the area counts for I2V).
std::vector<std::string> case_flags(const std::string& checkpoint, const GoldenCase& c) {
  const int64_t max_area = c.meta.at("max_area").get<int64_t>();
  const std::vector<double> guide = c.meta.at("guide").get<std::vector<double>>();
  std::ostringstream guide_text, shift_text;
  guide_text << guide.at(0) << "," << guide.at(1);
  shift_text << c.meta.at("shift").get<double>();
  return {"--ckpt_dir", checkpoint, "--image", c.image_path,
          "--prompt", c.meta.at("prompt").get<std::string>(),
          "--n_prompt", c.meta.at("n_prompt").get<std::string>(),
          "--size", "64*" + std::to_string(max_area / 64),
          "--frame_num", std::to_string(c.meta.at("frames").get<int64_t>()),
          "--sample_solver", c.meta.at("solver").get<std::string>(),
          "--sample_steps", std::to_string(c.meta.at("steps").get<int>()),
          "--sample_shift", shift_text.str(),
          "--sample_guide_scale", guide_text.str()};
}

std::vector<std::string> plus(std::vector<std::string> flags, const std::vector<std::string>& more) {
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

Tensor read_latent(const std::string& path) {
  const SafetensorsContents contents = read_safetensors(path);
  EXPECT_EQ(contents.tensors.names(), std::vector<std::string>{"latent"}) << path;
  return contents.tensors.get("latent").clone();
}

using testing::bitwise_equal;

class GenerateGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    WANRT_REQUIRE_GOLDEN(golden);
    golden_ = golden;
    checkpoint_ = (fs::path(golden_) / "Wan2.2-I2V-tiny").string();
    work_ = testing::temp_dir();
  }
  std::string out(const std::string& name) const { return (fs::path(work_) / name).string(); }

  std::string golden_, checkpoint_, work_;
};

// The dpm++ case's image is 64 wide and 96 high; area 4096 gives 48x64 (spec §2.2), 5 frames.
TEST_F(GenerateGolden, AviHasTheFramesSizeAndFpsAsked) {
  const GoldenCase c = golden_case(golden_, "dpmpp_6steps_guide2_4");
  const RunResult run = run_generate(plus(case_flags(checkpoint_, c),
                                          {"--sample_steps", "2", "--save_file", out("video.avi")}));
  ASSERT_EQ(run.status, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("Saved " + out("video.avi") + ": 5 frames, 48x64, 16 fps"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.err.find("step 2/2"), std::string::npos) << run.err;
  const AviHeader avi = read_avi_header(out("video.avi"));
  EXPECT_EQ(avi.total_frames, 5u);
  EXPECT_EQ(avi.length, 5u);
  EXPECT_EQ(avi.video_chunks, 5);
  EXPECT_EQ(avi.width, 48u);
  EXPECT_EQ(avi.height, 64u);
  EXPECT_EQ(avi.stream_type, "vids");
  EXPECT_EQ(avi.compression, "MJPG");
  ASSERT_GT(avi.scale, 0u);
  EXPECT_EQ(avi.rate / avi.scale, 16u);
  EXPECT_EQ(avi.rate % avi.scale, 0u);
  EXPECT_EQ(avi.micro_seconds_per_frame, 62500u);
}

// The default container: MP4 where this build writes it (else the AVI fallback, said so);
// either way the file on disk must hold what the final line claims.
TEST_F(GenerateGolden, DefaultVideoHoldsWhatTheLastLineSays) {
  const GoldenCase c = golden_case(golden_, "unipc_8steps");
  const RunResult run = run_generate(plus(case_flags(checkpoint_, c),
                                          {"--sample_steps", "2", "--save_file", out("video.mp4")}));
  ASSERT_EQ(run.status, 0) << run.out << run.err;
  const std::string path = written_video(run);
  ASSERT_FALSE(path.empty()) << run.out;
  ASSERT_TRUE(fs::exists(path)) << path;
  // The 100x70 image at area 6144 gives 80x64 (the golden video is [3, 9, 64, 80]).
  EXPECT_NE(run.out.find(": 9 frames, 80x64, 16 fps"), std::string::npos) << run.out;
  if (path.ends_with(".avi")) {
    EXPECT_NE(run.out.find("instead of MP4"), std::string::npos) << run.out;
    const AviHeader avi = read_avi_header(path);
    EXPECT_EQ(avi.total_frames, 9u);
    EXPECT_EQ(avi.width, 80u);
    EXPECT_EQ(avi.height, 64u);
    std::printf("no MP4 in this build: checked the AVI fallback %s\n", path.c_str());
    return;
  }
  ASSERT_EQ(path, out("video.mp4"));
  if (!have_program("ffprobe")) {
    GTEST_SKIP() << "SKIPPED the MP4 check: no ffprobe program (install ffmpeg to check "
                 << path << ")";
  }
  const auto stream = ffprobe_stream(path);
  EXPECT_EQ(stream.count("width") ? stream.at("width") : "", "80");
  EXPECT_EQ(stream.count("height") ? stream.at("height") : "", "64");
  EXPECT_EQ(stream.count("nb_read_frames") ? stream.at("nb_read_frames") : "", "9");
  EXPECT_EQ(stream.count("r_frame_rate") ? stream.at("r_frame_rate") : "", "16/1");
}

// The official run, fed its own noise through --noise_file: --save_latent must give the
// official final latent (end-to-end tolerance of golden/README.md, float32 CPU).
TEST_F(GenerateGolden, NoiseFileReproducesTheOfficialFinalLatent) {
  for (const char* name : {"dpmpp_6steps_guide2_4", "unipc_8steps"}) {
    SCOPED_TRACE(name);
    const GoldenCase c = golden_case(golden_, name);
    const std::string latent_path = out(std::string(name) + "_latent.safetensors");
    const RunResult run = run_generate(
        plus(case_flags(checkpoint_, c), {"--noise_file", c.tensors_path, "--save_latent",
                                          latent_path, "--save_file", out("golden.avi")}));
    ASSERT_EQ(run.status, 0) << run.out << run.err;
    const Tensor latent = read_latent(latent_path);
    const Tensor expected = read_safetensors(c.tensors_path).tensors.get("final_latent").clone();
    ASSERT_EQ(shape_str(latent.shape()), shape_str(expected.shape()));
    const double error = testing::relative_error(latent, expected);
    std::printf("%s: final latent relative error %.3g\n", name, error);
    EXPECT_LE(error, 1e-4);
  }
}

// Same noise file twice: bit-identical latents; the file a seeded run saves is that seed's
// seeded_noise and reproduces the seeded run; another seed gives another latent.
TEST_F(GenerateGolden, NoiseFileIsDeterministicAndSeedsDiffer) {
  const GoldenCase c = golden_case(golden_, "dpmpp_6steps_guide2_4");
  const std::vector<std::string> flags =
      plus(case_flags(checkpoint_, c), {"--sample_steps", "3", "--save_file", out("seed.avi")});
  RunResult run = run_generate(plus(flags, {"--base_seed", "11", "--save_noise",
                                            out("noise11.safetensors"), "--save_latent",
                                            out("seed11.safetensors")}));
  ASSERT_EQ(run.status, 0) << run.out << run.err;
  const Tensor saved_noise = read_safetensors(out("noise11.safetensors")).tensors.get("noise").clone();
  EXPECT_TRUE(bitwise_equal(saved_noise, seeded_noise({16, 2, 8, 6}, 11)))
      << "--save_noise did not write seeded_noise(shape, --base_seed)";

  for (const char* again : {"again1.safetensors", "again2.safetensors"}) {
    run = run_generate(plus(flags, {"--noise_file", out("noise11.safetensors"), "--save_latent",
                                    out(again)}));
    ASSERT_EQ(run.status, 0) << run.out << run.err;
  }
  const Tensor seeded = read_latent(out("seed11.safetensors"));
  const Tensor first = read_latent(out("again1.safetensors"));
  const Tensor second = read_latent(out("again2.safetensors"));
  EXPECT_TRUE(bitwise_equal(first, second)) << "the same noise file gave different latents";
  EXPECT_TRUE(bitwise_equal(seeded, first)) << "the saved noise did not reproduce its seeded run";

  // Seeds without any noise file: the pipeline's own noise.
  run = run_generate(plus(flags, {"--base_seed", "12", "--save_latent", out("seed12.safetensors")}));
  ASSERT_EQ(run.status, 0) << run.out << run.err;
  const Tensor other = read_latent(out("seed12.safetensors"));
  ASSERT_EQ(other.shape(), seeded.shape());
  EXPECT_FALSE(bitwise_equal(other, seeded)) << "seeds 11 and 12 gave the same latent";
  EXPECT_GT(testing::relative_error(other, seeded), 1e-3);
}

TEST_F(GenerateGolden, NoiseFileOfTheWrongDtypeIsRefused) {
  const GoldenCase c = golden_case(golden_, "dpmpp_6steps_guide2_4");
  const Tensor noise = read_safetensors(c.tensors_path).tensors.get("noise").to(DType::BF16);
  write_safetensors(out("bf16_noise.safetensors"), {{"noise", noise}});
  const RunResult run = run_generate(plus(case_flags(checkpoint_, c),
                                          {"--noise_file", out("bf16_noise.safetensors"),
                                           "--save_file", out("never.avi")}));
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("wanrt: error: --noise_file " + out("bf16_noise.safetensors") +
                         ": tensor 'noise' is BF16, expected F32 of shape [16, 2, 8, 6]"),
            std::string::npos)
      << run.err;
  EXPECT_FALSE(fs::exists(out("never.avi")));
}

}  // namespace
}  // namespace wanrt
