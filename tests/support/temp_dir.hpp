// TempDir: a unique directory for one test's files, removed with everything in it at the end.
//
// Unique per test (mkdtemp), so tests may run in parallel (ctest -j) and a crashed run leaves
// at most a "pcache-test-*" directory behind, never a file another test would trip over.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace pcache::testutil {

class TempDir {
public:
    // `parent`: /dev/shm for pmem files (tmpfs), /var/tmp for O_DIRECT (tmpfs refuses it).
    explicit TempDir(const std::string& parent = "/dev/shm") {
        std::string pattern = parent + "/pcache-test-XXXXXX";
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;  // best effort: a failed cleanup must not fail the test
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }

    bool ok() const { return !path_.empty(); }
    const std::string& path() const { return path_; }
    // A path inside the directory (the file is not created).
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

}  // namespace pcache::testutil
