// The umT5 tokenizer: SentencePiece on `spiece.model`, the reference's text cleaning, EOS and
// padding (spec §1.3).
//
//   ids = SentencePiece(clean(text))[:max_len - 1] + [EOS = 1] + [PAD = 0] * (max_len - length)
//
// which is what the reference's HF tokenizer call (padding='max_length', truncation=True,
// max_length=512, add_special_tokens=True) produces. Needs the SentencePiece library: without
// it (WANRT_HAVE_SENTENCEPIECE unset) constructing a Tokenizer throws an error that says so.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wanrt {

enum class TextCleaning : uint8_t {
  Reference,  // clean_prompt_text() first, as the reference pipeline does
  None,       // raw text straight to SentencePiece (how the golden end-to-end cases were made)
};

struct TokenizedText {
  std::vector<int64_t> ids;  // exactly max_len ids: pieces, EOS, then padding
  int64_t length = 0;        // real tokens, EOS included (the attention mask's sum)
};

class Tokenizer {
 public:
  static constexpr int64_t kPadId = 0;
  static constexpr int64_t kEosId = 1;
  static constexpr int64_t kDefaultMaxLength = 512;

  // Loads `spiece_model_path`; a missing, unreadable or corrupt file is a wanrt::Error naming it,
  // as is a model whose pad/eos ids are not 0/1.
  explicit Tokenizer(const std::string& spiece_model_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // SentencePiece ids of `text` as given: no cleaning, no EOS, no padding.
  std::vector<int64_t> pieces(std::string_view text) const;
  // The model input: see the formula above. max_len >= 1.
  TokenizedText encode(std::string_view text, int64_t max_len = kDefaultMaxLength,
                       TextCleaning cleaning = TextCleaning::Reference) const;

  int64_t vocab_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wanrt
