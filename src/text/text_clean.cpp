#include "text/text_clean.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

namespace wanrt {
namespace {

struct NamedEntity {
  std::string_view name;   // without the leading '&'; ends in ';' unless a legacy reference
  std::string_view utf8;   // what it stands for
};
struct WidthFolding {
  char32_t code_point;
  std::string_view utf8;
};
#include "text/text_tables.inc"

constexpr char32_t kReplacement = 0xFFFD;

// ---- UTF-8 <-> code points ----

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int extra = 0;
    char32_t cp = 0;
    char32_t min_value = 0;
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      extra = 1, cp = lead & 0x1Fu, min_value = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2, cp = lead & 0x0Fu, min_value = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3, cp = lead & 0x07u, min_value = 0x10000;
    } else {
      out.push_back(kReplacement);  // a stray continuation byte or an invalid lead byte
      ++i;
      continue;
    }
    bool valid = i + static_cast<size_t>(extra) < text.size();
    for (int k = 1; valid && k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
      if ((next & 0xC0) != 0x80) valid = false;
      else cp = (cp << 6) | (next & 0x3Fu);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if (valid && (cp < min_value || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) valid = false;
    if (!valid) {
      out.push_back(kReplacement);
      ++i;  // resynchronise on the next byte
      continue;
    }
    out.push_back(cp);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

void append(std::u32string& out, std::string_view utf8) { out += decode_utf8(utf8); }

// ---- character classes ----

// Python's str.isspace(): bidirectional class WS, B or S, or general category Zs.
bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The Windows-1252 meaning of bytes 0x80..0x9F; the five bytes it leaves undefined map to the
// same-numbered C1 control (the "sloppy" reading ftfy and the HTML numeric rules both use).
char32_t windows1252_c1(char32_t byte) {
  static constexpr std::array<char32_t, 32> kTable = {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  return kTable[byte - 0x80];
}

const NamedEntity* find_entity(std::string_view name) {
  const auto* begin = std::begin(kNamedEntities);
  const auto* end = std::end(kNamedEntities);
  const auto* it = std::lower_bound(begin, end, name, [](const NamedEntity& e, std::string_view n) {
    return e.name < n;
  });
  return it != end && it->name == name ? it : nullptr;
}

// ---- HTML character references ----

bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(char32_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_ascii_alnum(char32_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// What the numeric reference &#<value>; stands for (HTML5 rules as Python applies them).
std::u32string numeric_reference(uint64_t value, bool too_large) {
  if (!too_large && value == 0x00) return {kReplacement};
  if (!too_large && value == 0x0D) return {U'\r'};
  if (!too_large && value >= 0x80 && value <= 0x9F) return {windows1252_c1(static_cast<char32_t>(value))};
  if (too_large || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return {kReplacement};
  const auto cp = static_cast<char32_t>(value);
  const bool forbidden = (cp >= 0x01 && cp <= 0x08) || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) ||
                         (cp >= 0x7F && cp <= 0x9F) || (cp >= 0xFDD0 && cp <= 0xFDEF) ||
                         (cp & 0xFFFE) == 0xFFFE;
  if (forbidden) return {};
  return {cp};
}

// Tries to read a numeric reference at text[pos] == '#'. On success returns its expansion and
// sets `end` past it (past the ';' when present).
bool read_numeric_reference(const std::u32string& text, size_t pos, size_t& end,
                            std::u32string& expansion) {
  size_t i = pos + 1;
  const bool hex = i < text.size() && (text[i] == 'x' || text[i] == 'X');
  if (hex) ++i;
  const size_t digits_begin = i;
  uint64_t value = 0;
  bool too_large = false;
  while (i < text.size() && (hex ? is_hex_digit(text[i]) : is_digit(text[i]))) {
    const char32_t c = text[i];
    const uint64_t digit = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
    value = value * (hex ? 16 : 10) + digit;
    if (value > 0x10FFFF) too_large = true, value = 0x110000;  // keeps the loop from overflowing
    ++i;
  }
  if (i == digits_begin) return false;
  if (i < text.size() && text[i] == ';') ++i;
  end = i;
  expansion = numeric_reference(value, too_large);
  return true;
}

// One pass of reference expansion. `ftfy_rules`: only `&#?[0-9A-Za-z]{1,24};` is considered,
// named references need their ';', and a numeric one that does not expand cleanly stays as it
// is. Otherwise Python's html.unescape rules.
std::u32string unescape_references(const std::u32string& text, bool ftfy_rules) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    if (ftfy_rules) {
      size_t j = i + 1;
      const bool numeric = j < text.size() && text[j] == '#';
      if (numeric) ++j;
      const size_t name_begin = j;
      while (j < text.size() && j - name_begin < 24 && is_ascii_alnum(text[j])) ++j;
      if (j == name_begin || j >= text.size() || text[j] != ';') {
        out.push_back(text[i++]);
        continue;
      }
      const size_t match_end = j + 1;
      const std::u32string match = text.substr(i, match_end - i);
      std::u32string expansion;
      if (numeric) {
        expansion = unescape_references(match, /*ftfy_rules=*/false);
        if (expansion.find(U';') != std::u32string::npos) expansion = match;
      } else {
        const auto* entity = find_entity(encode_utf8(text.substr(i + 1, match_end - i - 1)));
        if (entity) append(expansion, entity->utf8);
        else expansion = match;
      }
      out += expansion;
      i = match_end;
      continue;
    }
    size_t end = 0;
    std::u32string expansion;
    if (i + 1 < text.size() && text[i + 1] == '#') {
      if (read_numeric_reference(text, i + 1, end, expansion)) {
        out += expansion;
        i = end;
      } else {
        out.push_back(text[i++]);
      }
      continue;
    }
    // A named reference: up to 32 characters other than \t \n \f space < & # ;, then maybe ';'.
    size_t j = i + 1;
    while (j < text.size() && j - (i + 1) < 32) {
      const char32_t c = text[j];
      if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
          c == ';')
        break;
      ++j;
    }
    if (j == i + 1) {
      out.push_back(text[i++]);
      continue;
    }
    if (j < text.size() && text[j] == ';') ++j;
    const std::string name = encode_utf8(text.substr(i + 1, j - i - 1));
    const std::u32string name32 = text.substr(i + 1, j - i - 1);
    if (const auto* entity = find_entity(name)) {
      append(out, entity->utf8);
    } else {
      // The longest legacy name (no ';') that prefixes the text, at least 2 characters long.
      bool found = false;
      for (size_t length = name32.size() - 1; length >= 2 && !found; --length) {
        if (const auto* prefix = find_entity(encode_utf8(name32.substr(0, length)))) {
          append(out, prefix->utf8);
          out += name32.substr(length);
          found = true;
        }
      }
      if (!found) out += text.substr(i, j - i);
    }
    i = j;
  }
  return out;
}

// ---- the ftfy fixes ----

std::u32string fix_c1_controls(const std::u32string& text) {
  std::u32string out = text;
  for (char32_t& cp : out)
    if (cp >= 0x80 && cp <= 0x9F) cp = windows1252_c1(cp);
  return out;
}

std::u32string_view latin_ligature(char32_t cp) {
  switch (cp) {
    case 0x0132: return U"IJ";
    case 0x0133: return U"ij";
    case 0x0149: return U"\u02BCn";
    case 0x01C4: return U"D\u017D";
    case 0x01C5: return U"D\u017E";
    case 0x01C6: return U"d\u017E";
    case 0x01C7: return U"LJ";
    case 0x01C8: return U"Lj";
    case 0x01C9: return U"lj";
    case 0x01CA: return U"NJ";
    case 0x01CB: return U"Nj";
    case 0x01CC: return U"nj";
    case 0x01F1: return U"DZ";
    case 0x01F2: return U"Dz";
    case 0x01F3: return U"dz";
    case 0xFB00: return U"ff";
    case 0xFB01: return U"fi";
    case 0xFB02: return U"fl";
    case 0xFB03: return U"ffi";
    case 0xFB04: return U"ffl";
    case 0xFB05: return U"\u017Ft";
    case 0xFB06: return U"st";
    default: return {};
  }
}

std::u32string fix_latin_ligatures(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    const auto expansion = latin_ligature(cp);
    if (expansion.empty()) out.push_back(cp);
    else out += expansion;
  }
  return out;
}

std::u32string fix_character_width(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    if (cp >= 0xFF01 && cp <= 0xFF5E) {
      out.push_back(cp - 0xFEE0);  // full-width ASCII
    } else if (cp == 0x3000) {
      out.push_back(U' ');  // ideographic space
    } else if (cp >= 0xFF5F && cp <= 0xFFEF) {
      const auto* it = std::find_if(std::begin(kWidthFoldings), std::end(kWidthFoldings),
                                    [cp](const WidthFolding& f) { return f.code_point == cp; });
      if (it != std::end(kWidthFoldings)) append(out, it->utf8);
      else out.push_back(cp);
    } else {
      out.push_back(cp);
    }
  }
  return out;
}

std::u32string uncurl_quotes(const std::u32string& text) {
  std::u32string out = text;
  for (char32_t& cp : out) {
    if (cp == 0x02BC || (cp >= 0x2018 && cp <= 0x201B)) cp = U'\'';
    else if (cp >= 0x201C && cp <= 0x201F) cp = U'"';
  }
  return out;
}

std::u32string fix_line_breaks(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t cp = text[i];
    if (cp == U'\r' && i + 1 < text.size() && text[i + 1] == U'\n') continue;  // CRLF -> LF
    const bool line_break = cp == U'\r' || cp == 0x2028 || cp == 0x2029 || cp == 0x85;
    out.push_back(line_break ? U'\n' : cp);
  }
  return out;
}

// ESC '[' then digits and ';' then one ASCII letter.
std::u32string remove_terminal_escapes(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == 0x1B && i + 1 < text.size() && text[i + 1] == U'[') {
      size_t j = i + 2;
      while (j < text.size() && (is_digit(text[j]) || text[j] == U';')) ++j;
      const bool letter = j < text.size() && ((text[j] >= 'a' && text[j] <= 'z') ||
                                              (text[j] >= 'A' && text[j] <= 'Z'));
      if (letter) {
        i = j + 1;
        continue;
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

bool is_removable_control(char32_t cp) {
  return cp <= 0x08 || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F ||
         (cp >= 0x206A && cp <= 0x206F) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFC);
}

std::u32string remove_control_chars(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text)
    if (!is_removable_control(cp)) out.push_back(cp);
  return out;
}

// ftfy's fix-up loop on one line (a segment ending after its '\n').
std::u32string fix_segment(std::u32string text, bool unescape_html) {
  for (;;) {
    const std::u32string before = text;
    if (unescape_html) text = unescape_references(text, /*ftfy_rules=*/true);
    text = fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    text = uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    if (text == before) return text;
  }
}

std::u32string strip(const std::u32string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && is_python_space(text[begin])) ++begin;
  while (end > begin && is_python_space(text[end - 1])) --end;
  return text.substr(begin, end - begin);
}

}  // namespace

std::string ftfy_fix_text(std::string_view text) {
  const std::u32string input = decode_utf8(text);
  std::u32string out;
  bool unescape_html = true;
  size_t pos = 0;
  while (pos < input.size()) {
    const size_t newline = input.find(U'\n', pos);
    const size_t end = newline == std::u32string::npos ? input.size() : newline + 1;
    const std::u32string segment = input.substr(pos, end - pos);
    // "auto": a '<' suggests real HTML, whose entities must stay; ftfy keeps that decision for
    // the rest of the text.
    if (segment.find(U'<') != std::u32string::npos) unescape_html = false;
    out += fix_segment(segment, unescape_html);
    pos = end;
  }
  return encode_utf8(out);
}

std::string html_unescape(std::string_view text) {
  return encode_utf8(unescape_references(decode_utf8(text), /*ftfy_rules=*/false));
}

std::string collapse_whitespace(std::string_view text) {
  const std::u32string input = decode_utf8(text);
  std::u32string out;
  out.reserve(input.size());
  bool in_space = false;
  for (char32_t cp : input) {
    if (is_python_space(cp)) {
      if (!in_space) out.push_back(U' ');
      in_space = true;
    } else {
      out.push_back(cp);
      in_space = false;
    }
  }
  return encode_utf8(strip(out));
}

std::string clean_prompt_text(std::string_view text) {
  std::string basic = ftfy_fix_text(text);
  basic = html_unescape(html_unescape(basic));
  basic = encode_utf8(strip(decode_utf8(basic)));
  return collapse_whitespace(basic);
}

}  // namespace wanrt
