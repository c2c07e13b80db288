// Status and Result<T>: how pcache reports errors without exceptions.
//
// Every fallible operation returns a Status (no value) or a Result<T> (a value or an error).
// An error carries a category (Errc) for programs and a message for people; the message says
// what was expected and what was found, and where (field name, byte offset) when it is about
// on-media bytes. Exceptions are used only at the edge of the tools.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace pcache {

enum class Errc {
    ok = 0,
    invalid_argument,  // the caller asked for something impossible (range, option, value)
    corrupt,           // on-media bytes fail validation (magic, CRC, bounds, chain)
    io,                // a device reported an I/O or media error
    no_space,          // device too small, or no free segment
    busy,              // the cache is full of dirty data: retry after writeback/GC progress
    not_found,         // a file or record that must exist does not
    unsupported,       // valid but not implemented (another cache mode, another endianness)
    data_crc,          // cached data failed its CRC: never returned as data
    read_only,         // a write, flush or background step on a cache opened read-only
};

constexpr std::string_view errc_name(Errc c) noexcept {
    switch (c) {
        case Errc::ok:
            return "ok";
        case Errc::invalid_argument:
            return "invalid argument";
        case Errc::corrupt:
            return "corrupt";
        case Errc::io:
            return "I/O error";
        case Errc::no_space:
            return "no space";
        case Errc::busy:
            return "busy";
        case Errc::not_found:
            return "not found";
        case Errc::unsupported:
            return "unsupported";
        case Errc::data_crc:
            return "data CRC mismatch";
        case Errc::read_only:
            return "read-only";
    }
    return "unknown";
}

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {
        assert(code != Errc::ok);
    }
    static Status success() { return {}; }

    bool ok() const noexcept { return code_ == Errc::ok; }
    explicit operator bool() const noexcept { return ok(); }
    Errc code() const noexcept { return code_; }
    const std::string& message() const noexcept { return message_; }
    std::string to_string() const {
        return ok() ? std::string("ok") : std::string(errc_name(code_)) + ": " + message_;
    }
    // Adds context in front of the message ("opening cache: " + message).
    Status with_context(std::string_view context) const {
        if (ok()) return *this;
        return Status(code_, std::string(context) + ": " + message_);
    }

private:
    Errc code_ = Errc::ok;
    std::string message_;
};

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
    Result(Status error) : v_(std::move(error)) { assert(!std::get<Status>(v_).ok()); }
    Result(Errc code, std::string message) : v_(Status(code, std::move(message))) {}

    bool ok() const noexcept { return std::holds_alternative<T>(v_); }
    explicit operator bool() const noexcept { return ok(); }
    T& value() & {
        assert(ok());
        return std::get<T>(v_);
    }
    const T& value() const& {
        assert(ok());
        return std::get<T>(v_);
    }
    T&& value() && {
        assert(ok());
        return std::get<T>(std::move(v_));
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    Status status() const { return ok() ? Status() : std::get<Status>(v_); }
    Errc code() const noexcept { return ok() ? Errc::ok : std::get<Status>(v_).code(); }

private:
    std::variant<T, Status> v_;
};

}  // namespace pcache

// Propagates a failed Status from the current function.
#define PCACHE_TRY(expr)                                         \
    do {                                                         \
        ::pcache::Status pcache_try_status_ = (expr);            \
        if (!pcache_try_status_.ok()) return pcache_try_status_; \
    } while (0)
