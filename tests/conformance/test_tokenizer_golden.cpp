// Every case of golden/tokenizer/cases.json: SentencePiece ids of the raw text (no cleaning, no
// EOS) must equal the reference's exactly; and the model input built from them follows the
// EOS/padding rule.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "test_support.h"
#include "text/tokenizer.h"

namespace wanrt {
namespace {

TEST(TokenizerGolden, EveryCaseMatchesExactly) {
  WANRT_REQUIRE_GOLDEN(golden);
#if !WANRT_HAVE_SENTENCEPIECE
  GTEST_SKIP() << "SKIPPED: built without SentencePiece";
#else
  const Tokenizer tokenizer(golden + "/Wan2.2-I2V-tiny/google/umt5-xxl/spiece.model");
  std::ifstream file(golden + "/tokenizer/cases.json");
  ASSERT_TRUE(file) << "cannot open tokenizer/cases.json";
  const auto cases = nlohmann::json::parse(file);
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 0u);
  for (const auto& entry : cases) {
    const std::string text = entry.at("text").get<std::string>();
    const auto expected = entry.at("sentencepiece_ids").get<std::vector<int64_t>>();
    SCOPED_TRACE("text: " + text.substr(0, 80));
    EXPECT_EQ(tokenizer.pieces(text), expected);
    const auto tokens = tokenizer.encode(text, 512, TextCleaning::None);
    const size_t kept = std::min<size_t>(expected.size(), 511);
    EXPECT_EQ(tokens.length, static_cast<int64_t>(kept) + 1);
    ASSERT_EQ(tokens.ids.size(), 512u);
    EXPECT_TRUE(std::equal(expected.begin(), expected.begin() + static_cast<long>(kept),
                           tokens.ids.begin()));
    EXPECT_EQ(tokens.ids[kept], Tokenizer::kEosId);
  }
#endif
}

// The end-to-end cases record the model input ids (EOS included, no cleaning) of their prompt
// and of their effective negative prompt (the default Chinese one where none was given).
TEST(TokenizerGolden, EndToEndPromptIds) {
  WANRT_REQUIRE_GOLDEN(golden);
#if !WANRT_HAVE_SENTENCEPIECE
  GTEST_SKIP() << "SKIPPED: built without SentencePiece";
#else
  const Tokenizer tokenizer(golden + "/Wan2.2-I2V-tiny/google/umt5-xxl/spiece.model");
  for (const char* name : {"unipc_8steps", "dpmpp_6steps_guide2_4"}) {
    const auto contents = read_safetensors(golden + "/e2e/" + name + ".safetensors");
    const auto meta = nlohmann::json::parse(contents.metadata.at("meta"));
    for (const auto& [text_key, ids_key] :
         {std::pair{"prompt", "prompt_ids"}, std::pair{"n_prompt_effective", "n_prompt_ids"}}) {
      SCOPED_TRACE(std::string(name) + " " + text_key);
      const auto expected = meta.at(ids_key).get<std::vector<int64_t>>();
      const auto tokens =
          tokenizer.encode(meta.at(text_key).get<std::string>(), 512, TextCleaning::None);
      ASSERT_EQ(tokens.length, static_cast<int64_t>(expected.size()));
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), tokens.ids.begin()));
    }
  }
#endif
}

}  // namespace
}  // namespace wanrt
