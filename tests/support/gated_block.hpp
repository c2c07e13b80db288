// GatedBlock: a MemBlockDevice whose reads or whose writes wait at a gate while it is shut, so
// a test can hold the engine inside a backing I/O and act while it is there.
//   - A held read has already copied its bytes (the reader has the old ones; the gate stands
//     between the read and its return). A held write has not written yet.
//   - wait_held() returns once a request is waiting at the gate (false after the timeout).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "pcache/blockdev/mem_block_device.hpp"

namespace pcache::testutil {

class GatedBlock {
public:
    enum class Gate { reads, writes };
    GatedBlock(std::uint64_t bytes, Gate gate, bool shut) : mem_(bytes), gate_(gate), shut_(shut) {}

    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) {
        Status s = mem_.read(off, dst);
        if (gate_ == Gate::reads) pass();
        return s;
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        if (gate_ == Gate::writes) pass();
        return mem_.write(off, src, fua);
    }
    Status flush() { return mem_.flush(); }

    void shut() {
        std::lock_guard g(m_);
        shut_ = true;
    }
    void open() {
        std::lock_guard g(m_);
        shut_ = false;
        cv_.notify_all();
    }
    bool wait_held(std::chrono::seconds timeout = std::chrono::seconds(60)) {
        std::unique_lock g(m_);
        return cv_.wait_for(g, timeout, [&] { return held_ > 0; });
    }

private:
    void pass() {
        std::unique_lock g(m_);
        if (!shut_) return;
        ++held_;
        cv_.notify_all();
        cv_.wait(g, [&] { return !shut_; });
        --held_;
    }

    MemBlockDevice mem_;
    Gate gate_;
    std::mutex m_;
    std::condition_variable cv_;
    bool shut_;
    int held_ = 0;
};
static_assert(BlockDevice<GatedBlock>);

}  // namespace pcache::testutil
