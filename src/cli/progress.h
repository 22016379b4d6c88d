// Progress: the import progress report on stderr.
//
// On a terminal it redraws one line (a bar, percent, points, rate, ETA) at most ten times a
// second; anywhere else (a log file, CI, a pipe) a redrawn line would be noise, so it prints a
// plain line every few seconds instead. Progress is counted in "work units" (rows of a matrix,
// bytes of a JSON Lines file) so the percentage is right even when records differ in size, while
// the points count shown is the real number of records. Not thread-safe: one importer drives it.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace fathom::cli {

class Progress {
 public:
  // `total_units` may be 0 when unknown (no bar, no ETA). `out` is normally stderr; nullptr
  // makes a silent Progress that still measures time.
  Progress(std::string label, uint64_t total_units, std::FILE* out);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Update(uint64_t done_units, uint64_t points);
  // Clears the terminal line so the summary printed next starts on a clean line.
  void Finish();

  // Seconds since construction.
  double ElapsedSeconds() const;

 private:
  void Draw(uint64_t done_units, uint64_t points, double now);

  using Clock = std::chrono::steady_clock;
  std::string label_;
  uint64_t total_units_;
  std::FILE* out_;
  bool tty_;
  bool finished_ = false;
  bool drawn_ = false;
  Clock::time_point start_;
  double last_draw_ = 0;
};

}  // namespace fathom::cli
