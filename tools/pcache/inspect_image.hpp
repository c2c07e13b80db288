// Opening an image for the read-only commands: the pmem file through ImageFile (never written),
// the backing device only for its size, then the header stage of the inspector.
#pragma once

#include <optional>
#include <string>

#include "pcache/blockdev/backing.hpp"
#include "pcache/cli.hpp"
#include "pcache/image_file.hpp"
#include "pcache/inspect.hpp"

namespace pcache::tool {

struct Inspected {
    std::optional<ImageFile> pmem;
    inspect::Header header;
    std::uint64_t backing_bytes = 0;  // 0 when --backing was not given
};

// --pmem (required), --backing (optional here), --segment-size.
inline void add_image_options(po::options_description& opts, bool backing_required) {
    opts.add_options()("pmem", po::value<std::string>()->required(),
                       "cache device: pmem file or device");
    if (backing_required)
        opts.add_options()("backing", po::value<std::string>()->required(),
                           "backing device: a file or block device, nbd://HOST:PORT/EXPORT, "
                           "nbd+unix:///EXPORT?socket=PATH or rbd:POOL/IMAGE");
    else
        opts.add_options()(
            "backing", po::value<std::string>(),
            "backing device (path, NBD URI or rbd:POOL/IMAGE; optional: keys are then "
            "checked against its size)");
    add_geometry_option(opts);
}

// A one-line explanation of why an image is not a usable cache ("" for State::cache).
inline std::string not_a_cache(const std::string& path, const inspect::Header& h) {
    switch (h.state) {
        case inspect::State::blank:
            return "'" + path + "' is not formatted (superblock magic is 0): run pcache format";
        case inspect::State::cache:
            return "";
        default:
            return "'" + path + "' does not hold a usable pcache cache (" +
                   inspect::state_name(h.state) + "): " + h.state_reason;
    }
}

// Returns -1 and fills `out`, or the exit code after a diagnostic.
inline int open_and_inspect(const char* cmd, const po::variables_map& vm, Inspected& out) {
    auto geo = geometry_from(vm);
    if (!geo.ok()) return usage_error(cmd, geo.status().message());
    if (vm.count("backing")) {
        BackingOpenOptions bo;
        bo.read_only = true;  // only its size is needed
        auto b = open_backing(vm["backing"].as<std::string>(), bo);
        if (!b.ok()) return fail(cmd, b.status());
        out.backing_bytes = (*b)->size();
    }
    auto f = ImageFile::open(vm["pmem"].as<std::string>(), "pmem");
    if (!f.ok()) return fail(cmd, f.status());
    auto h = inspect::read_header(*f, *geo);
    if (!h.ok()) return fail(cmd, h.status());
    out.pmem.emplace(std::move(*f));
    out.header = std::move(*h);
    return -1;
}

// For commands that need a loadable cache: -1 when the image holds one, otherwise the exit code
// after saying why (nothing is written either way).
inline int require_loadable(const char* cmd, const Inspected& img) {
    const inspect::Header& h = img.header;
    if (h.state != inspect::State::cache) {
        say(cmd, not_a_cache(img.pmem->path(), h));
        return kExitProblems;
    }
    if (!h.walkable()) {
        for (const auto& p : h.problems.list) say(cmd, p);
        say(cmd, "the cache cannot be loaded; run pcache check for details (nothing was written)");
        return kExitProblems;
    }
    return -1;
}

}  // namespace pcache::tool
