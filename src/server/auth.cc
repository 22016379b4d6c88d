#include "server/auth.h"

namespace fathom::server {

bool ConstantTimeEquals(std::string_view given, std::string_view expected) {
  unsigned diff = given.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(expected[i]);
  }
  return diff == 0;
}

AuthResult Authorize(const ApiKeys& keys, std::string_view api_key_header,
                     std::string_view authorization_header, Access access) {
  if (access == Access::kPublic || !keys.enabled()) return {};
  std::string_view key = api_key_header;
  if (key.empty()) {
    constexpr std::string_view kBearer = "Bearer ";
    if (authorization_header.size() > kBearer.size() &&
        authorization_header.substr(0, kBearer.size()) == kBearer) {
      key = authorization_header.substr(kBearer.size());
    }
  }
  if (key.empty()) {
    return {401, "missing API key: send it as 'api-key: KEY' or 'Authorization: Bearer KEY'"};
  }
  // Both comparisons always run, so timing does not tell which key was close.
  bool read_write = !keys.read_write.empty() && ConstantTimeEquals(key, keys.read_write);
  bool read_only = !keys.read_only.empty() && ConstantTimeEquals(key, keys.read_only);
  if (read_write) return {};
  if (read_only) {
    if (access == Access::kWrite) return {403, "the read-only API key cannot change data", true};
    return {0, "", true};
  }
  return {401, "invalid API key"};
}

}  // namespace fathom::server
