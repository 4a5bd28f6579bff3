// Names that arrive from the network are checked before they touch the file system: a pool's
// UUID becomes part of a directory name only when it is a canonical UUID (36 characters, hex
// digits and dashes at 8, 13, 18 and 23), so "../" or "/" can never reach a path.
#pragma once

#include <string_view>

namespace tessera::security {

constexpr bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace tessera::security
