// The reference's prompt cleaning, `whitespace_clean(basic_clean(text))` (spec §1.3):
//
//   basic_clean:      ftfy.fix_text(text) -> html.unescape twice -> strip
//   whitespace_clean: every run of Unicode whitespace -> one ASCII space -> strip
//
// Input and output are UTF-8. Bytes that are not valid UTF-8 become U+FFFD (Python would never
// see them: its strings are already decoded).
//
// What of ftfy.fix_text (default configuration) is reproduced, applied line by line and repeated
// until the text stops changing, as ftfy does:
//   - HTML entity unescape, "auto" mode: only entities closed by ';' (named ones from the WHATWG
//     list, and numeric ones); switched off from the first line containing '<' onwards, since
//     ftfy then assumes the text is real HTML. The upper-case spellings ftfy also accepts
//     (&EACUTE;) are not recognised.
//   - C1 controls U+0080..U+009F read as Windows-1252 bytes (U+0093 -> U+201C ...).
//   - Latin ligatures expanded: ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ(-> ſt) ﬆ, and the digraph letters Ĳ ĳ ŉ Ǳ ǲ ǳ Ǆ ǅ ǆ
//     Ǉ ǈ ǉ Ǌ ǋ ǌ (their one-level compatibility decompositions).
//   - Character width: U+FF01..U+FF5E -> ASCII, U+3000 -> space, and the other half-/full-width
//     forms U+FF5F..U+FFEF to their NFKC form (half-width katakana -> full-width, ...).
//   - Curly quotes: U+02BC, U+2018..U+201B -> ', U+201C..U+201F -> ".
//   - Line breaks: CRLF, CR, U+2028, U+2029, U+0085 -> LF.
//   - Terminal escapes (ESC [ digits/';' letter) removed.
//   - Control characters removed: U+0000..U+0008, U+000B, U+000E..U+001F, U+007F, U+206A..U+206F,
//     U+FEFF, U+FFF9..U+FFFC (tab, LF, FF and CR are kept, as ftfy keeps them).
// What is NOT reproduced:
//   - Mojibake repair (ftfy's heuristic re-decoding of text that went through the wrong codec,
//     "cafÃ©" -> "café") and its byte-A0 / lossy-sequence variants: text is taken as correct.
//   - NFC normalisation is not done. SentencePiece models with an NFKC normaliser (the umT5
//     spiece.model uses nmt_nfkc) normalise anyway, and NFKC(NFC(x)) == NFKC(x), so token ids
//     only differ in contrived cases where a decomposed sequence interacts with the steps above.
//   - Surrogate repair: UTF-8 cannot carry lone surrogates; they arrive as U+FFFD.
//
// html.unescape follows Python's (HTML5) rules: named references with or without ';' (the
// longest legacy name that prefixes the text when ';' is missing), numeric references with or
// without ';', Windows-1252 for &#128;..&#159;, U+FFFD for 0, surrogates and values past
// U+10FFFF, and nothing for the other forbidden code points (&#1;, &#xFFFE; ...).
#pragma once

#include <string>
#include <string_view>

namespace wanrt {

// The whole reference cleaning, as applied to both the prompt and the negative prompt.
std::string clean_prompt_text(std::string_view text);

// The parts, exposed for tests.
std::string ftfy_fix_text(std::string_view text);
// Python's html.unescape (one pass).
std::string html_unescape(std::string_view text);
// re.sub(r"\s+", " ", text).strip() with Python's Unicode notion of whitespace.
std::string collapse_whitespace(std::string_view text);

}  // namespace wanrt
