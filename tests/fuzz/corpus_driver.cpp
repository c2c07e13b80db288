// A libFuzzer-compatible main() for ctest: feeds every file named on the command line (or
// found, in name order, in a directory named there) to LLVMFuzzerTestOneInput once. A crash or
// a harness abort fails the test and the last "input:" line names the file.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const fs::path p(argv[i]);
        if (!fs::is_directory(p)) {
            files.push_back(p);
            continue;
        }
        std::vector<fs::path> in_dir;
        for (const auto& e : fs::directory_iterator(p))
            if (e.is_regular_file()) in_dir.push_back(e.path());
        std::sort(in_dir.begin(), in_dir.end());
        files.insert(files.end(), in_dir.begin(), in_dir.end());
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: %s <corpus-dir-or-file>... (no input found)\n", argv[0]);
        return 2;
    }
    for (const auto& f : files) {
        std::fprintf(stderr, "input: %s\n", f.c_str());
        std::ifstream in(f, std::ios::binary);
        const std::vector<char> bytes{std::istreambuf_iterator<char>(in),
                                      std::istreambuf_iterator<char>()};
        if (!in.eof() && !in.good()) {
            std::fprintf(stderr, "cannot read %s\n", f.c_str());
            return 2;
        }
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    }
    std::printf("%zu inputs replayed\n", files.size());
    return 0;
}
