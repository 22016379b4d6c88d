// API-key checks for the REST server: which key a request carries, and whether it may call a
// route. Keys are compared in constant time so response timing does not reveal how much of a
// guessed key was right. Pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "server/router.h"

namespace fathom::server {

struct ApiKeys {
  std::string read_write;  // FATHOM_API_KEY
  std::string read_only;   // FATHOM_READ_ONLY_API_KEY
  // With no key configured every request is allowed (the server then insists on loopback).
  bool enabled() const { return !read_write.empty() || !read_only.empty(); }
};

struct AuthResult {
  int status = 0;  // 0 allowed, 401 missing or wrong key, 403 read-only key on a write route
  std::string message;
  bool read_only = false;  // allowed with the read-only key (so writes would be refused)
};

// `api_key_header` is the "api-key" header, `authorization_header` the "Authorization" one
// ("Bearer KEY"); either may be empty.
AuthResult Authorize(const ApiKeys& keys, std::string_view api_key_header,
                     std::string_view authorization_header, Access access);

// True when the strings are equal; the time taken depends only on `expected`'s length.
bool ConstantTimeEquals(std::string_view given, std::string_view expected);

}  // namespace fathom::server
