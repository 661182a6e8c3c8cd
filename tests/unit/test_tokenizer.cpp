// Tokenizer rules: EOS appended, padding to max_len with 0, truncation to max_len - 1 pieces,
// cleaning on/off, and the errors for missing or broken model files. Uses the tiny checkpoint's
// spiece.model from the golden folder (only as a model file; no expected ids are read).
#include <filesystem>
#include <fstream>
#include <random>

#include "test_support.h"
#include "text/text_clean.h"
#include "text/tokenizer.h"

namespace wanrt {
namespace {

#if WANRT_HAVE_SENTENCEPIECE

std::string spiece_path(const std::string& golden) {
  return golden + "/Wan2.2-I2V-tiny/google/umt5-xxl/spiece.model";
}

std::string random_words(std::mt19937_64& rng, int count) {
  std::string text;
  for (int w = 0; w < count; ++w) {
    if (w) text += ' ';
    const int letters = 1 + static_cast<int>(rng() % 7);
    for (int k = 0; k < letters; ++k) text += static_cast<char>('a' + rng() % 26);
  }
  return text;
}

TEST(Tokenizer, AppendsEosAndPads) {
  WANRT_REQUIRE_GOLDEN(golden);
  const Tokenizer tokenizer(spiece_path(golden));
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 20; ++trial) {
    const std::string text = random_words(rng, 1 + static_cast<int>(rng() % 30));
    const auto pieces = tokenizer.pieces(text);
    const int64_t max_len = static_cast<int64_t>(pieces.size()) + 1 + static_cast<int64_t>(rng() % 100);
    const auto tokens = tokenizer.encode(text, max_len, TextCleaning::None);
    ASSERT_EQ(static_cast<int64_t>(tokens.ids.size()), max_len);
    ASSERT_LE(static_cast<int64_t>(pieces.size()) + 1, max_len);
    EXPECT_EQ(tokens.length, static_cast<int64_t>(pieces.size()) + 1);
    for (size_t i = 0; i < pieces.size(); ++i) EXPECT_EQ(tokens.ids[i], pieces[i]);
    EXPECT_EQ(tokens.ids[pieces.size()], Tokenizer::kEosId);
    for (size_t i = pieces.size() + 1; i < tokens.ids.size(); ++i)
      ASSERT_EQ(tokens.ids[i], Tokenizer::kPadId);
  }
}

TEST(Tokenizer, EmptyTextIsJustEos) {
  WANRT_REQUIRE_GOLDEN(golden);
  const Tokenizer tokenizer(spiece_path(golden));
  const auto tokens = tokenizer.encode("   ");
  EXPECT_EQ(tokens.length, 1);
  ASSERT_EQ(tokens.ids.size(), 512u);
  EXPECT_EQ(tokens.ids[0], Tokenizer::kEosId);
  EXPECT_EQ(tokens.ids[1], Tokenizer::kPadId);
}

TEST(Tokenizer, TruncatesTo511PiecesPlusEos) {
  WANRT_REQUIRE_GOLDEN(golden);
  const Tokenizer tokenizer(spiece_path(golden));
  std::mt19937_64 rng(testing::test_seed());
  const std::string text = random_words(rng, 900);
  const auto pieces = tokenizer.pieces(text);
  ASSERT_GT(pieces.size(), 511u);
  const auto tokens = tokenizer.encode(text, 512, TextCleaning::None);
  ASSERT_EQ(tokens.ids.size(), 512u);
  EXPECT_EQ(tokens.length, 512);
  EXPECT_EQ(tokens.ids.back(), Tokenizer::kEosId);
  for (size_t i = 0; i < 511; ++i) ASSERT_EQ(tokens.ids[i], pieces[i]) << "at " << i;
  // Exactly 511 pieces + EOS also fits without padding; max_len 1 leaves only EOS.
  EXPECT_EQ(tokenizer.encode(text, 1, TextCleaning::None).ids, std::vector<int64_t>{1});
  EXPECT_THROW(tokenizer.encode(text, 0), Error);
}

TEST(Tokenizer, CleaningIsAppliedUnlessSwitchedOff) {
  WANRT_REQUIRE_GOLDEN(golden);
  const Tokenizer tokenizer(spiece_path(golden));
  const std::string text = "  a&amp;b，c\t\td  ";
  const auto cleaned = tokenizer.encode(text);
  const auto expected = tokenizer.encode(clean_prompt_text(text), 512, TextCleaning::None);
  EXPECT_EQ(cleaned.ids, expected.ids);
  const auto raw = tokenizer.encode(text, 512, TextCleaning::None);
  auto raw_pieces = tokenizer.pieces(text);
  raw_pieces.push_back(Tokenizer::kEosId);
  raw_pieces.resize(512, Tokenizer::kPadId);
  EXPECT_EQ(raw.ids, raw_pieces);
  EXPECT_NE(raw.ids, cleaned.ids);  // '&amp;' and '，' change the pieces
}

#endif  // WANRT_HAVE_SENTENCEPIECE

TEST(Tokenizer, MissingModelFileIsNamed) {
  const std::string path = testing::temp_dir() + "/no/such/spiece.model";
  try {
    Tokenizer tokenizer(path);
    FAIL() << "no error for a missing model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, CorruptModelFileIsNamed) {
  const std::string path = testing::temp_dir() + "/spiece.model";
  {
    std::ofstream out(path, std::ios::binary);
    std::mt19937_64 rng(testing::test_seed());
    for (int i = 0; i < 1000; ++i) out.put(static_cast<char>(rng() & 0xFF));
  }
  try {
    Tokenizer tokenizer(path);
    FAIL() << "no error for a corrupt model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wanrt
