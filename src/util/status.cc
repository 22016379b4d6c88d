#include "fathom/status.h"

#include <cstdio>
#include <cstdlib>

namespace fathom {

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kInvalidArgument: return "InvalidArgument";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kAlreadyExists: return "AlreadyExists";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kIOError: return "IOError";
    case Status::Code::kNotSupported: return "NotSupported";
    case Status::Code::kFailedPrecondition: return "FailedPrecondition";
    case Status::Code::kResourceExhausted: return "ResourceExhausted";
    case Status::Code::kInternal: return "Internal";
    case Status::Code::kNoSpace: return "NoSpace";
    case Status::Code::kUnavailable: return "Unavailable";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

void CheckFailed(const char* file, int line, const char* expr, const std::string& msg) {
  std::fprintf(stderr, "fathom: internal check failed at %s:%d: %s (%s)\n", file, line, expr,
               msg.c_str());
  std::abort();
}

}  // namespace fathom
