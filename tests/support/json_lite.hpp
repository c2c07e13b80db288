// A minimal JSON reader for test fixtures (the kernel-image descriptions in tests/data/kernel).
//
// Parses the whole of RFC 8259 that the fixtures use: objects, arrays, strings (escapes, \u
// limited to ASCII), numbers (kept as their text, converted on request), true/false/null.
// No JSON library is among pcache's dependencies, and the fixtures are small and trusted, so
// this stays a test helper: on malformed input parse() returns an error naming the byte offset.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "pcache/result.hpp"

namespace pcache::testutil {

class Json {
public:
    enum class Kind { null, boolean, number, string, array, object };

    Kind kind() const { return kind_; }
    // Member or element access; a missing member or index yields a shared null value.
    const Json& operator[](const std::string& key) const {
        auto it = object_.find(key);
        return it == object_.end() ? null_value() : it->second;
    }
    const Json& operator[](std::size_t i) const {
        return i < array_.size() ? array_[i] : null_value();
    }
    bool has(const std::string& key) const { return object_.count(key) != 0; }
    std::size_t size() const { return kind_ == Kind::array ? array_.size() : object_.size(); }
    const std::vector<Json>& items() const { return array_; }

    const std::string& str() const { return text_; }  // string value, or a number's text
    bool boolean() const { return text_ == "true"; }
    // Numbers, and strings holding a decimal number ("off": "1048576" in the fixtures).
    std::uint64_t u64() const { return std::stoull(text_); }

    static Result<Json> parse(const std::string& text) {
        Parser p{text, 0};
        Json v;
        if (Status s = p.value(v, 0); !s.ok()) return s;
        p.skip_ws();
        if (p.at != text.size()) return p.error("trailing bytes after the JSON value");
        return v;
    }
    static Result<Json> parse_file(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) return Status(Errc::not_found, "cannot open JSON file " + path);
        std::ostringstream ss;
        ss << in.rdbuf();
        auto r = parse(ss.str());
        if (!r.ok()) return r.status().with_context(path);
        return r;
    }

private:
    static const Json& null_value() {
        static const Json n;
        return n;
    }

    struct Parser {
        const std::string& s;
        std::size_t at;
        static constexpr int kDepthMax = 64;

        Status error(const std::string& what) const {
            return {Errc::corrupt, "JSON at byte " + std::to_string(at) + ": " + what};
        }
        void skip_ws() {
            while (at < s.size() &&
                   (s[at] == ' ' || s[at] == '\n' || s[at] == '\r' || s[at] == '\t'))
                ++at;
        }
        bool eat(char c) {
            skip_ws();
            if (at < s.size() && s[at] == c) {
                ++at;
                return true;
            }
            return false;
        }
        Status literal(Json& v, const char* word, Kind kind) {
            const std::string w(word);
            if (s.compare(at, w.size(), w) != 0) return error("unexpected character");
            at += w.size();
            v.kind_ = kind;
            v.text_ = w;
            return {};
        }
        Status string(std::string& out) {
            if (!eat('"')) return error("expected a string");
            while (at < s.size() && s[at] != '"') {
                char c = s[at++];
                if (c != '\\') {
                    out += c;
                    continue;
                }
                if (at >= s.size()) break;
                const char e = s[at++];
                switch (e) {
                    case 'n':
                        out += '\n';
                        break;
                    case 't':
                        out += '\t';
                        break;
                    case 'r':
                        out += '\r';
                        break;
                    case 'b':
                        out += '\b';
                        break;
                    case 'f':
                        out += '\f';
                        break;
                    case 'u': {
                        if (at + 4 > s.size()) return error("truncated \\u escape");
                        const unsigned long cp = std::stoul(s.substr(at, 4), nullptr, 16);
                        if (cp > 0x7f)
                            return error("non-ASCII \\u escape (not needed by the fixtures)");
                        out += static_cast<char>(cp);
                        at += 4;
                        break;
                    }
                    default:
                        out += e;
                        break;  // \" \\ \/
                }
            }
            if (at >= s.size()) return error("unterminated string");
            ++at;
            return {};
        }
        Status value(Json& v, int depth) {
            if (depth > kDepthMax) return error("nesting deeper than 64");
            skip_ws();
            if (at >= s.size()) return error("unexpected end of input");
            const char c = s[at];
            if (c == '{') return object(v, depth);
            if (c == '[') return array(v, depth);
            if (c == '"') {
                v.kind_ = Kind::string;
                return string(v.text_);
            }
            if (c == 't') return literal(v, "true", Kind::boolean);
            if (c == 'f') return literal(v, "false", Kind::boolean);
            if (c == 'n') return literal(v, "null", Kind::null);
            const std::size_t begin = at;
            while (at < s.size() &&
                   std::string_view("+-0123456789.eE").find(s[at]) != std::string_view::npos)
                ++at;
            if (at == begin) return error("unexpected character");
            v.kind_ = Kind::number;
            v.text_ = s.substr(begin, at - begin);
            return {};
        }
        Status object(Json& v, int depth) {
            ++at;
            v.kind_ = Kind::object;
            if (eat('}')) return {};
            do {
                std::string key;
                skip_ws();
                PCACHE_TRY(string(key));
                if (!eat(':')) return error("expected ':'");
                PCACHE_TRY(value(v.object_[key], depth + 1));
            } while (eat(','));
            return eat('}') ? Status() : error("expected ',' or '}'");
        }
        Status array(Json& v, int depth) {
            ++at;
            v.kind_ = Kind::array;
            if (eat(']')) return {};
            do {
                v.array_.emplace_back();
                PCACHE_TRY(value(v.array_.back(), depth + 1));
            } while (eat(','));
            return eat(']') ? Status() : error("expected ',' or ']'");
        }
    };

    Kind kind_ = Kind::null;
    std::string text_;
    std::vector<Json> array_;
    std::map<std::string, Json> object_;
};

}  // namespace pcache::testutil
