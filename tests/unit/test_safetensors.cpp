// safetensors: round trips through our writer and reader, zero-copy views, the misaligned
// copy path, sharded indexes, and one test per kind of malformed input.
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using testing::temp_dir;
using testing::test_seed;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

constexpr DType kAllDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3,
                                DType::F8_E5M2, DType::F64, DType::I8, DType::U8,
                                DType::I16, DType::I32, DType::I64, DType::BOOL};

// Random bit patterns (NaNs included: the format must carry bytes, not values); BOOL gets 0/1.
Tensor random_tensor(DType dtype, const Shape& shape, std::mt19937_64& rng) {
  Tensor tensor = Tensor::empty(dtype, shape);
  auto* bytes = static_cast<unsigned char*>(tensor.raw_mut());
  for (size_t i = 0; i < tensor.nbytes(); ++i)
    bytes[i] = static_cast<unsigned char>(dtype == DType::BOOL ? rng() % 2 : rng());
  return tensor;
}

Shape random_shape(std::mt19937_64& rng) {
  Shape shape(rng() % 5);
  for (auto& extent : shape) extent = static_cast<int64_t>(1 + rng() % 9);
  return shape;
}

void expect_same_tensor(const Tensor& actual, const Tensor& expected, const std::string& name) {
  ASSERT_EQ(actual.describe(), expected.describe()) << name;
  ASSERT_EQ(actual.nbytes(), expected.nbytes()) << name;
  if (expected.nbytes() > 0) {
    EXPECT_EQ(std::memcmp(actual.raw(), expected.raw(), expected.nbytes()), 0) << name;
  }
}

// Runs `action`, which must throw a wanrt::Error naming `file` and containing every word.
template <typename Action>
void expect_error(Action&& action, const std::string& file,
                  std::initializer_list<std::string_view> words) {
  try {
    action();
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(file), std::string::npos) << "message does not name the file: " << message;
    for (std::string_view word : words)
      EXPECT_NE(message.find(word), std::string::npos) << "no '" << word << "' in: " << message;
    return;
  }
  ADD_FAILURE() << "no wanrt::Error for " << file;
}

void expect_read_error(const std::string& path, std::initializer_list<std::string_view> words) {
  expect_error([&] { read_safetensors(path); }, path, words);
}

void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A file with the header text verbatim and `data_bytes` random data bytes.
std::string raw_file(const std::string& header, size_t data_bytes, std::mt19937_64& rng) {
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<char>(rng()));
  return bytes;
}

std::string entry_json(const std::string& name, const std::string& dtype, const std::string& shape,
                       uint64_t begin, uint64_t end) {
  return str_cat("\"", name, "\": {\"dtype\": \"", dtype, "\", \"shape\": ", shape,
                 ", \"data_offsets\": [", begin, ", ", end, "]}");
}

// Whether `address` lies in a memory mapping of `path` (Linux: /proc/self/maps).
bool in_mapping_of(const void* address, const std::string& path) {
  const std::string target = fs::weakly_canonical(path).string();
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find(target) == std::string::npos) continue;
    unsigned long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &start, &end) != 2) continue;
    const auto where = reinterpret_cast<uintptr_t>(address);
    if (start <= where && where < end) return true;
  }
  return false;
}

nlohmann::ordered_json header_of(const std::string& path, uint64_t* header_bytes) {
  const std::string bytes = read_bytes(path);
  uint64_t length = 0;
  for (size_t i = 8; i-- > 0;) length = (length << 8) | static_cast<unsigned char>(bytes.at(i));
  *header_bytes = length;
  return nlohmann::ordered_json::parse(bytes.substr(8, length));
}

struct SafetensorsTest : ::testing::Test {
  SafetensorsTest() : seed(test_seed()), rng(seed), dir(temp_dir()) {}
  std::string path(const std::string& file) const { return (fs::path(dir) / file).string(); }
  uint64_t seed;
  std::mt19937_64 rng;
  std::string dir;
};

TEST_F(SafetensorsTest, RoundTripsEveryDtypeAndOddShapes) {
  SCOPED_TRACE(str_cat("seed ", seed));
  NamedTensors written;
  for (DType dtype : kAllDTypes) {
    const Shape shapes[] = {{}, {0}, {3, 0, 5}, {1}, {7}, {2, 3, 5}, random_shape(rng)};
    for (const Shape& shape : shapes)
      written.emplace_back(str_cat(dtype_name(dtype), shape_str(shape), "#", written.size()),
                           random_tensor(dtype, shape, rng));
  }
  std::shuffle(written.begin(), written.end(), rng);  // vary which tensors land misaligned
  const std::string file = path("all.safetensors");
  write_safetensors(file, written);

  const SafetensorsContents read = read_safetensors(file);
  EXPECT_TRUE(read.metadata.empty());
  ASSERT_EQ(read.tensors.size(), written.size());
  for (const auto& [name, tensor] : written) {
    expect_same_tensor(read.tensors.get(name), tensor, name);
    EXPECT_EQ(read.tensors.file_of(name), file);
  }
}

TEST_F(SafetensorsTest, WriterKeepsOrderPacksDataAndAlignsTheDataSection) {
  SCOPED_TRACE(str_cat("seed ", seed));
  NamedTensors written;
  for (int i = 0; i < 9; ++i) {
    const DType dtype = kAllDTypes[rng() % std::size(kAllDTypes)];
    written.emplace_back(str_cat("z", 9 - i, ".weight"), random_tensor(dtype, random_shape(rng), rng));
  }
  const std::string file = path("order.safetensors");
  write_safetensors(file, written);

  uint64_t header_bytes = 0;
  const nlohmann::ordered_json header = header_of(file, &header_bytes);
  EXPECT_EQ((8 + header_bytes) % 8, 0u);
  const std::string bytes = read_bytes(file);
  const std::string header_text = bytes.substr(8, header_bytes);
  EXPECT_EQ(header_text.find_last_not_of(' '), header_text.find_last_of('}'));  // spaces pad
  size_t index = 0;
  uint64_t offset = 0;
  for (const auto& [name, entry] : header.items()) {  // ordered_json keeps the file's order
    ASSERT_LT(index, written.size());
    EXPECT_EQ(name, written[index].first);
    EXPECT_EQ(entry["data_offsets"][0].get<uint64_t>(), offset);
    offset += written[index].second.nbytes();
    EXPECT_EQ(entry["data_offsets"][1].get<uint64_t>(), offset);
    ++index;
  }
  EXPECT_EQ(index, written.size());
  EXPECT_EQ(bytes.size(), 8 + header_bytes + offset);
}

TEST_F(SafetensorsTest, MetadataAndUnusualNamesRoundTrip) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"meta", str_cat("{\"seed\": ", rng() % 1000, ", \"note\": \"quoted \\\" text\"}")},
      {"empty", ""},
      {"unicode ü ✓", "ñ"}};
  const NamedTensors written = {{"name with \"quotes\" and ü", random_tensor(DType::F32, {3}, rng)},
                                {"", random_tensor(DType::I64, {2}, rng)}};
  const std::string file = path("meta.safetensors");
  write_safetensors(file, written, metadata);
  const SafetensorsContents read = read_safetensors(file);
  EXPECT_EQ(read.metadata, metadata);
  for (const auto& [name, tensor] : written) expect_same_tensor(read.tensors.get(name), tensor, name);
}

TEST_F(SafetensorsTest, AlignedTensorsAreViewsIntoTheMapping) {
  SCOPED_TRACE(str_cat("seed ", seed));
  // Sizes keep every tensor aligned: F64 first, then 4-, 2- and 1-byte types.
  const NamedTensors written = {{"a", random_tensor(DType::F64, {7}, rng)},
                                {"b", random_tensor(DType::F32, {4, 16}, rng)},
                                {"c", random_tensor(DType::BF16, {3, 5}, rng)},
                                {"d", random_tensor(DType::U8, {11}, rng)}};
  const std::string file = path("views.safetensors");
  write_safetensors(file, written);

  Tensor kept;
  {
    const SafetensorsContents read = read_safetensors(file);
    const auto* first = static_cast<const std::byte*>(read.tensors.get("a").raw());
    uint64_t offset = 0;
    for (const auto& [name, tensor] : written) {
      const Tensor& view = read.tensors.get(name);
      EXPECT_TRUE(in_mapping_of(view.raw(), file)) << name << " is not inside the file's mapping";
      EXPECT_EQ(static_cast<const std::byte*>(view.raw()) - first, static_cast<ptrdiff_t>(offset))
          << name;
      offset += tensor.nbytes();
      expect_same_tensor(view, tensor, name);
    }
    kept = read.tensors.get("b");
  }
  // The view alone keeps the mapping alive, even once the file is gone from the folder.
  fs::remove(file);
  EXPECT_TRUE(in_mapping_of(kept.raw(), file));  // maps lists it as "<path> (deleted)"
  expect_same_tensor(kept, written[1].second, "b after the store is gone");
}

TEST_F(SafetensorsTest, MisalignedTensorsAreCopiedToAlignedMemory) {
  SCOPED_TRACE(str_cat("seed ", seed));
  // A 3-byte tensor first pushes every later one off its natural alignment.
  const NamedTensors written = {{"pad", random_tensor(DType::I8, {3}, rng)},
                                {"x", random_tensor(DType::F32, {5}, rng)},
                                {"y", random_tensor(DType::F64, {3}, rng)},
                                {"z", random_tensor(DType::BF16, {2, 2}, rng)}};
  const std::string file = path("misaligned.safetensors");
  write_safetensors(file, written);
  const SafetensorsContents read = read_safetensors(file);
  EXPECT_TRUE(in_mapping_of(read.tensors.get("pad").raw(), file));
  for (const auto& [name, tensor] : written) {
    const Tensor& loaded = read.tensors.get(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded.raw()) % dtype_size(loaded.dtype()), 0u) << name;
    if (name != "pad") {
      EXPECT_FALSE(in_mapping_of(loaded.raw(), file)) << name << " was not copied";
    }
    expect_same_tensor(loaded, tensor, name);
  }
}

TEST_F(SafetensorsTest, FileAtAnOddAddressIsCopiedExceptBytes) {
  SCOPED_TRACE(str_cat("seed ", seed));
  // Aligned within the file, but the whole file sits one byte past an 8-byte boundary.
  const NamedTensors written = {{"a", random_tensor(DType::F64, {3}, rng)},
                                {"b", random_tensor(DType::I32, {2, 3}, rng)},
                                {"c", random_tensor(DType::F16, {5}, rng)},
                                {"d", random_tensor(DType::BOOL, {4}, rng)}};
  const std::string file = path("aligned.safetensors");
  write_safetensors(file, written);
  const std::string bytes = read_bytes(file);
  std::vector<uint64_t> buffer(bytes.size() / 8 + 2);
  std::byte* start = reinterpret_cast<std::byte*>(buffer.data()) + 1;
  std::memcpy(start, bytes.data(), bytes.size());
  const SafetensorsContents parsed = parse_safetensors({start, bytes.size()}, "buffer", nullptr);
  for (const auto& [name, tensor] : written) {
    const Tensor& loaded = parsed.tensors.get(name);
    const auto* where = static_cast<const std::byte*>(loaded.raw());
    const bool inside = where >= start && where < start + bytes.size();
    EXPECT_EQ(inside, dtype_size(loaded.dtype()) == 1) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(where) % dtype_size(loaded.dtype()), 0u) << name;
    expect_same_tensor(loaded, tensor, name);
  }
}

TEST_F(SafetensorsTest, ShardedIndexRoundTrip) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string shards[] = {"model-00001-of-00002.safetensors",
                                "model-00002-of-00002.safetensors"};
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  std::map<std::string, std::pair<Tensor, std::string>> expected;
  uint64_t total_bytes = 0;
  for (int shard = 0; shard < 2; ++shard) {
    NamedTensors tensors;
    for (int i = 0; i < 4; ++i) {
      const std::string name = str_cat("blocks.", shard, ".w", i);
      Tensor tensor = random_tensor(i % 2 ? DType::BF16 : DType::F32, random_shape(rng), rng);
      total_bytes += tensor.nbytes();
      index["weight_map"][name] = shards[shard];
      expected.emplace(name, std::pair{tensor, path(shards[shard])});
      tensors.emplace_back(name, tensor);
    }
    write_safetensors(path(shards[shard]), tensors);
  }
  index["metadata"]["total_size"] = total_bytes;
  const std::string index_path = path("model.safetensors.index.json");
  write_bytes(index_path, index.dump(2));

  const TensorStore store = read_safetensors_index(index_path);
  ASSERT_EQ(store.size(), expected.size());
  EXPECT_EQ(store.total_bytes(), total_bytes);
  for (const auto& [name, tensor_and_file] : expected) {
    expect_same_tensor(store.get(name), tensor_and_file.first, name);
    EXPECT_EQ(store.file_of(name), tensor_and_file.second);
  }
}

// ---- malformed files ----

TEST_F(SafetensorsTest, TruncatedFileFailsAtEveryCutPoint) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string whole = path("whole.safetensors");
  write_safetensors(whole, {{"a", random_tensor(DType::F32, {3}, rng)},
                            {"b", random_tensor(DType::BF16, {2, 2}, rng)},
                            {"c", random_tensor(DType::I8, {5}, rng)}});
  const std::string bytes = read_bytes(whole);
  const std::string cut = path("cut.safetensors");
  for (size_t length = 0; length < bytes.size(); ++length) {
    SCOPED_TRACE(str_cat("cut at ", length, " of ", bytes.size()));
    write_bytes(cut, std::string_view(bytes).substr(0, length));
    expect_read_error(cut, {"truncated"});
  }
}

TEST_F(SafetensorsTest, HeaderLengthPastTheEndOrHuge) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string header = "{" + entry_json("a", "F32", "[2]", 0, 8) + "}";
  std::string bytes = raw_file(header, 8, rng);
  const uint64_t past_end = bytes.size() - 8 + 1 + rng() % 1000;
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(past_end >> (8 * i));
  const std::string file = path("long_header.safetensors");
  write_bytes(file, bytes);
  expect_read_error(file, {"header length", "past the end"});

  const uint64_t huge = 100'000'001 + rng() % 1'000'000'000;
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(huge >> (8 * i));
  write_bytes(file, bytes);
  expect_read_error(file, {"header length", "too large"});
}

TEST_F(SafetensorsTest, HeaderThatIsNotAJsonObject) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("bad_json.safetensors");
  const std::pair<std::string, std::string_view> cases[] = {
      {"{\"a\": {\"dtype\": \"F32\", ", "not valid JSON"},
      {"", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"a\xff\xfe\": {}}", "UTF-8"},
      {"{\"a\": 1} trailing", "not valid JSON"},
      {"{\"a\": \"F32\"}", "not an object"},
  };
  for (const auto& [header, problem] : cases) {
    SCOPED_TRACE(header);
    write_bytes(file, raw_file(header, 0, rng));
    expect_read_error(file, {problem});
  }
}

TEST_F(SafetensorsTest, OffsetsOutOfRangeOrReversed) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("range.safetensors");
  write_bytes(file, raw_file("{" + entry_json("w", "F32", "[100]", 0, 400) + "}", 200, rng));
  expect_read_error(file, {"'w'", "out of range"});
  write_bytes(file, raw_file("{" + entry_json("w", "F32", "[0]", 8, 4) + "}", 8, rng));
  expect_read_error(file, {"'w'", "begin after"});
  write_bytes(file, raw_file("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, rng));
  expect_read_error(file, {"'w'", "data_offsets"});
  write_bytes(file, raw_file("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4, rng));
  expect_read_error(file, {"'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("overlap.safetensors");
  write_bytes(file, raw_file("{" + entry_json("a", "F32", "[4]", 0, 16) + ", " +
                                 entry_json("b", "F32", "[4]", 8, 24) + "}",
                             24, rng));
  expect_read_error(file, {"'a'", "'b'", "overlap"});
  // The same bytes claimed twice.
  write_bytes(file, raw_file("{" + entry_json("a", "I16", "[8]", 0, 16) + ", " +
                                 entry_json("b", "F32", "[4]", 0, 16) + "}",
                             16, rng));
  expect_read_error(file, {"overlap"});
}

TEST_F(SafetensorsTest, GapsInTheDataSection) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("gap.safetensors");
  write_bytes(file, raw_file("{" + entry_json("a", "F32", "[4]", 0, 16) + ", " +
                                 entry_json("b", "F32", "[4]", 24, 40) + "}",
                             40, rng));
  expect_read_error(file, {"gap", "'b'"});
  write_bytes(file, raw_file("{" + entry_json("a", "F32", "[4]", 8, 24) + "}", 24, rng));
  expect_read_error(file, {"gap", "'a'"});
}

TEST_F(SafetensorsTest, TrailingBytesAfterTheData) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("trailing.safetensors");
  const size_t extra = 1 + rng() % 64;
  write_bytes(file, raw_file("{" + entry_json("a", "F32", "[4]", 0, 16) + "}", 16 + extra, rng));
  expect_read_error(file, {"trailing", str_cat(extra, " trailing")});
  write_bytes(file, raw_file("{}", extra, rng));
  expect_read_error(file, {"trailing"});
}

TEST_F(SafetensorsTest, UnknownDtypeIsNamed) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("dtype.safetensors");
  for (const std::string dtype : {"F128", "U16", "bf16", ""}) {
    write_bytes(file, raw_file("{" + entry_json("w", dtype, "[2]", 0, 4) + "}", 4, rng));
    expect_read_error(file, {"'w'", "dtype", "'" + dtype + "'"});
  }
  write_bytes(file, raw_file("{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, rng));
  expect_read_error(file, {"'w'", "dtype"});
  write_bytes(file, raw_file("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, rng));
  expect_read_error(file, {"'w'", "dtype"});
}

TEST_F(SafetensorsTest, ShapeAndByteSizeDisagree) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("model.safetensors");
  write_bytes(file, raw_file("{" + entry_json("blocks.0.ffn.0.weight", "BF16", "[384, 256]", 0, 100) + "}",
                             100, rng));
  expect_read_error(file, {"'blocks.0.ffn.0.weight'", "[0, 100)", "BF16[384, 256]", "needs 196608"});
  // A scalar holds one element; a zero-sized dimension holds none.
  write_bytes(file, raw_file("{" + entry_json("s", "F64", "[]", 0, 0) + "}", 0, rng));
  expect_read_error(file, {"'s'", "needs 8"});
  write_bytes(file, raw_file("{" + entry_json("e", "F32", "[4, 0]", 0, 16) + "}", 16, rng));
  expect_read_error(file, {"'e'", "needs 0"});
}

TEST_F(SafetensorsTest, MalformedShapes) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("shape.safetensors");
  const std::pair<std::string, std::string_view> cases[] = {
      {"[-1, 4]", "not an integer in"},
      {"[2.5]", "not an integer in"},
      {"[\"3\"]", "not an integer in"},
      {"7", "not an array"},
      {"[4611686018427387904, 4611686018427387904]", "too many elements"},
      {"[9223372036854775808]", "not an integer in"},
      {"[4611686018427387904]", "too many elements"},
  };
  for (const auto& [shape, problem] : cases) {
    SCOPED_TRACE(shape);
    write_bytes(file, raw_file("{" + entry_json("w", "F32", shape, 0, 4) + "}", 4, rng));
    expect_read_error(file, {"'w'", "shape", problem});
  }
}

TEST_F(SafetensorsTest, TensorListedTwice) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("twice.safetensors");
  write_bytes(file, raw_file("{" + entry_json("w", "F32", "[1]", 0, 4) + ", " +
                                 entry_json("w", "F32", "[1]", 4, 8) + "}",
                             8, rng));
  expect_read_error(file, {"'w'", "twice"});
}

TEST_F(SafetensorsTest, BadMetadata) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("metadata.safetensors");
  const std::string tensor = entry_json("w", "F32", "[1]", 0, 4);
  write_bytes(file, raw_file("{\"__metadata__\": {\"format\": \"pt\", \"step\": 5}, " + tensor + "}", 4, rng));
  expect_read_error(file, {"__metadata__", "'step'", "not a string"});
  write_bytes(file, raw_file("{\"__metadata__\": {\"nested\": {\"a\": \"b\"}}, " + tensor + "}", 4, rng));
  expect_read_error(file, {"__metadata__", "'nested'", "not a string"});
  write_bytes(file, raw_file("{\"__metadata__\": [\"pt\"], " + tensor + "}", 4, rng));
  expect_read_error(file, {"__metadata__", "not an object"});
}

// ---- malformed sharded checkpoints ----

struct ShardedTest : SafetensorsTest {
  // Writes shard files (name -> tensor names) and an index with `weight_map`.
  std::string write_checkpoint(const std::map<std::string, std::vector<std::string>>& shards,
                               const nlohmann::json& weight_map) {
    for (const auto& [shard, names] : shards) {
      NamedTensors tensors;
      for (const auto& name : names) tensors.emplace_back(name, random_tensor(DType::F32, {2, 3}, rng));
      write_safetensors(path(shard), tensors);
    }
    const std::string index_path = path("model.safetensors.index.json");
    write_bytes(index_path, nlohmann::json{{"weight_map", weight_map}}.dump());
    return index_path;
  }
  void expect_index_error(const std::string& index_path, std::initializer_list<std::string_view> words) {
    expect_error([&] { read_safetensors_index(index_path); }, index_path, words);
  }
};

TEST_F(ShardedTest, IndexThatIsNotAnIndex) {
  const std::string index_path = path("model.safetensors.index.json");
  write_bytes(index_path, "{\"weight_map\": {\"a\": ");
  expect_index_error(index_path, {"not valid JSON"});
  write_bytes(index_path, "{\"metadata\": {}}");
  expect_index_error(index_path, {"weight_map"});
  write_bytes(index_path, "{\"weight_map\": [\"a.safetensors\"]}");
  expect_index_error(index_path, {"weight_map", "not an object"});
  write_bytes(index_path, "{\"weight_map\": {\"a\": 3}}");
  expect_index_error(index_path, {"'a'", "shard file name"});
  write_bytes(index_path, "{\"weight_map\": {\"a\": \"../outside.safetensors\"}}");
  expect_index_error(index_path, {"'a'", "not a file name"});
  write_bytes(index_path, "{\"weight_map\": {}}");
  expect_index_error(index_path, {"empty"});
  write_bytes(index_path, "{\"weight_map\": {\"a\": \"x.safetensors\"}, \"metadata\": {\"total_size\": \"9\"}}");
  expect_index_error(index_path, {"total_size"});
}

TEST_F(ShardedTest, MissingShardIsNamed) {
  const std::string index_path = write_checkpoint(
      {{"one.safetensors", {"a"}}}, {{"a", "one.safetensors"}, {"b", "two.safetensors"}});
  expect_index_error(index_path, {"'two.safetensors'", "missing", "'b'"});
}

TEST_F(ShardedTest, ShardHoldsATensorTheIndexDoesNotList) {
  const std::string index_path =
      write_checkpoint({{"one.safetensors", {"a", "stray"}}}, {{"a", "one.safetensors"}});
  expect_index_error(index_path, {"one.safetensors", "'stray'", "does not list"});
}

TEST_F(ShardedTest, ShardHoldsATensorAssignedToAnotherShard) {
  const std::string index_path = write_checkpoint(
      {{"one.safetensors", {"a", "t"}}, {"two.safetensors", {"b"}}},
      {{"a", "one.safetensors"}, {"b", "two.safetensors"}, {"t", "two.safetensors"}});
  expect_index_error(index_path, {"one.safetensors", "'t'", "assigns to shard 'two.safetensors'"});
}

TEST_F(ShardedTest, TensorInTwoShards) {
  const std::string index_path = write_checkpoint(
      {{"one.safetensors", {"a", "t"}}, {"two.safetensors", {"b", "t"}}},
      {{"a", "one.safetensors"}, {"b", "two.safetensors"}, {"t", "two.safetensors"}});
  expect_index_error(index_path, {"'t'", "two.safetensors"});
  // The index itself may list a tensor twice, once per shard; the JSON parser must not
  // silently keep one of them.
  write_bytes(index_path,
              "{\"weight_map\": {\"t\": \"one.safetensors\", \"a\": \"one.safetensors\", "
              "\"b\": \"two.safetensors\", \"t\": \"two.safetensors\"}}");
  expect_index_error(index_path, {"'t'", "twice"});
}

TEST_F(ShardedTest, ShardLacksATensorTheIndexAssignsToIt) {
  const std::string index_path = write_checkpoint(
      {{"one.safetensors", {"a"}}}, {{"a", "one.safetensors"}, {"gone", "one.safetensors"}});
  expect_index_error(index_path, {"'gone'", "one.safetensors", "lacks"});
}

TEST_F(ShardedTest, TotalSizeMustMatchTheTensorBytes) {
  const std::string index_path = write_checkpoint({{"one.safetensors", {"a", "b"}}},
                                                  {{"a", "one.safetensors"}, {"b", "one.safetensors"}});
  const uint64_t right = 2 * 6 * 4;
  const uint64_t wrong = right + 1 + rng() % 100;
  const auto with_total = [&](uint64_t total) {
    write_bytes(index_path, nlohmann::json{{"metadata", {{"total_size", total}}},
                                           {"weight_map", {{"a", "one.safetensors"}, {"b", "one.safetensors"}}}}
                                .dump());
  };
  with_total(wrong);
  expect_index_error(index_path, {"total_size", str_cat(wrong), str_cat(right)});
  with_total(right);
  EXPECT_EQ(read_safetensors_index(index_path).size(), 2u);
}

// ---- writer failures ----

TEST_F(SafetensorsTest, WriterRejectsWhatItCannotWrite) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("rejected.safetensors");
  const Tensor host = random_tensor(DType::F32, {4}, rng);
  const Tensor device = Tensor::view(nullptr, host.raw(), DType::F32, {4}, Device::Cuda);
  expect_error([&] { write_safetensors(file, {{"w", device}}); }, file, {"'w'", "GPU"});
  expect_error([&] { write_safetensors(file, {{"w", host}, {"w", host}}); }, file, {"'w'", "twice"});
  expect_error([&] { write_safetensors(file, {{"__metadata__", host}}); }, file, {"reserved"});
  expect_error([&] { write_safetensors(file, {{"bad \xff name", host}}); }, file, {"encode"});
  EXPECT_FALSE(fs::exists(file));
  const std::string nowhere = path("no/such/folder/x.safetensors");
  expect_error([&] { write_safetensors(nowhere, {{"w", host}}); }, nowhere, {"cannot create"});
}

TEST_F(SafetensorsTest, FailedWriteLeavesTheOldFileAndNoTemporary) {
  SCOPED_TRACE(str_cat("seed ", seed));
  const std::string file = path("precious.safetensors");
  const Tensor old_tensor = random_tensor(DType::F32, {16}, rng);
  write_safetensors(file, {{"old", old_tensor}});
  const std::string old_bytes = read_bytes(file);

  // Cap this process's file size so the write of a 1 MiB tensor fails half-way (EFBIG).
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit capped = saved;
  capped.rlim_cur = std::min<rlim_t>(saved.rlim_max, 64 * 1024);
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &capped), 0);
  std::string message;
  try {
    write_safetensors(file, {{"new", random_tensor(DType::F32, {256, 1024}, rng)}});
  } catch (const Error& error) {
    message = error.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);

  EXPECT_NE(message.find(file), std::string::npos) << message;
  EXPECT_NE(message.find("write failed"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(file), old_bytes);
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++entries;
    EXPECT_EQ(entry.path().string(), file) << "left behind: " << entry.path();
  }
  EXPECT_EQ(entries, 1u);
  expect_same_tensor(read_safetensors(file).tensors.get("old"), old_tensor, "old");
}

}  // namespace
}  // namespace wanrt
