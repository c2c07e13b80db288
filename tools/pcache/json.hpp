// JsonWriter: streams indented JSON to a FILE (dump may print a million keys: nothing is
// buffered beyond the current line). Keys are written as given; strings are escaped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace pcache::tool {

class JsonWriter {
public:
    explicit JsonWriter(std::FILE* out) : out_(out) {}

    JsonWriter& object(const char* key = nullptr) { return open(key, '{'); }
    JsonWriter& array(const char* key = nullptr) { return open(key, '['); }
    JsonWriter& end() {
        const bool was_empty = first_;
        const char close = stack_.back() == '{' ? '}' : ']';
        stack_.pop_back();
        if (!was_empty) newline();
        std::fputc(close, out_);
        first_ = false;
        if (stack_.empty()) std::fputc('\n', out_);
        return *this;
    }

    JsonWriter& num(const char* key, std::uint64_t v) {
        prefix(key);
        std::fprintf(out_, "%llu", static_cast<unsigned long long>(v));
        return *this;
    }
    JsonWriter& real(const char* key, double v) {
        prefix(key);
        std::fprintf(out_, "%.3f", v);
        return *this;
    }
    JsonWriter& boolean(const char* key, bool v) {
        prefix(key);
        std::fputs(v ? "true" : "false", out_);
        return *this;
    }
    JsonWriter& null(const char* key) {
        prefix(key);
        std::fputs("null", out_);
        return *this;
    }
    JsonWriter& str(const char* key, const std::string& v) {
        prefix(key);
        std::fputc('"', out_);
        for (unsigned char c : v) {
            if (c == '"' || c == '\\')
                std::fprintf(out_, "\\%c", c);
            else if (c == '\n')
                std::fputs("\\n", out_);
            else if (c < 0x20)
                std::fprintf(out_, "\\u%04x", c);
            else
                std::fputc(c, out_);
        }
        std::fputc('"', out_);
        return *this;
    }
    JsonWriter& hex(const char* key, std::uint64_t v) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
        return str(key, buf);
    }

private:
    JsonWriter& open(const char* key, char c) {
        prefix(key);
        std::fputc(c, out_);
        stack_.push_back(c);
        first_ = true;
        return *this;
    }
    void newline() {
        std::fputc('\n', out_);
        for (std::size_t i = 0; i < stack_.size(); ++i) std::fputs("  ", out_);
    }
    void prefix(const char* key) {
        if (!stack_.empty()) {
            if (!first_) std::fputc(',', out_);
            newline();
        }
        first_ = false;
        if (key) std::fprintf(out_, "\"%s\": ", key);
    }

    std::FILE* out_;
    std::vector<char> stack_;
    bool first_ = true;
};

}  // namespace pcache::tool
