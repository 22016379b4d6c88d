#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

namespace fathom::cli {
namespace {

// A terminal gets a fluid bar; a log gets a line this often, enough to show a long import is alive.
constexpr double kTtyInterval = 0.1;
constexpr double kLogInterval = 5.0;
constexpr int kBarWidth = 30;

}  // namespace

Progress::Progress(std::string label, uint64_t total_units, std::FILE* out)
    : label_(std::move(label)),
      total_units_(total_units),
      out_(out),
      tty_(out != nullptr && isatty(fileno(out)) != 0),
      start_(Clock::now()) {}

Progress::~Progress() {
  Finish();
}

double Progress::ElapsedSeconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

void Progress::Update(uint64_t done_units, uint64_t points) {
  if (finished_ || out_ == nullptr) return;
  double now = ElapsedSeconds();
  if (now - last_draw_ < (tty_ ? kTtyInterval : kLogInterval)) return;
  last_draw_ = now;
  Draw(done_units, points, now);
}

void Progress::Draw(uint64_t done_units, uint64_t points, double now) {
  double rate = now > 0 ? static_cast<double>(points) / now : 0;
  double fraction =
      total_units_ > 0 ? std::min(1.0, static_cast<double>(done_units) / total_units_) : 0;
  if (tty_) {
    std::string bar;
    if (total_units_ > 0) {
      int filled = static_cast<int>(fraction * kBarWidth);
      // Appended piecewise: GCC 12 at -O3 misreports a chain of string '+' here (-Wrestrict).
      bar.append(1, '[').append(filled, '=');
      if (filled < kBarWidth) bar.append(1, '>').append(kBarWidth - filled - 1, ' ');
      bar.append("] ");
    }
    char eta[32] = "";
    if (fraction > 0 && fraction < 1) {
      std::snprintf(eta, sizeof(eta), "  ETA %.0fs", now * (1 - fraction) / fraction);
    }
    // \x1b[K erases what a longer previous line left behind.
    std::fprintf(out_, "\r%s: %s%3.0f%%  %llu points  %.0f points/s%s\x1b[K", label_.c_str(),
                 bar.c_str(), fraction * 100, static_cast<unsigned long long>(points), rate, eta);
  } else if (total_units_ > 0) {
    std::fprintf(out_, "%s: %.0f%% (%llu points, %.0f points/s)\n", label_.c_str(), fraction * 100,
                 static_cast<unsigned long long>(points), rate);
  } else {
    std::fprintf(out_, "%s: %llu points (%.0f points/s)\n", label_.c_str(),
                 static_cast<unsigned long long>(points), rate);
  }
  std::fflush(out_);
  drawn_ = true;
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_ && drawn_) {
    std::fprintf(out_, "\r\x1b[K");
    std::fflush(out_);
  }
}

}  // namespace fathom::cli
