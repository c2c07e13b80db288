// Opening an image for the read-only commands: the pmem file through ImageFile (never written),
// the backing device only for its size, then the header stage of the inspector.
#pragma once

#include <optional>
#include <string>

#include "pcache/blockdev/backing.hpp"
#include "pcache/cli.hpp"
#include "pcache/image_file.hpp"
#include "pcache/inspect.hpp"
#include "serve/device_guard.hpp"

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

// When the image is not a clean cache with `used`, the segment size it does read as a clean
// cache with (the superblock does not record it), as a hint; "" when no other size fits.
inline std::string segment_size_hint(const ImageFile& f, const format::Geometry& used) {
    for (std::uint64_t seg = 64 * 1024; seg <= format::Geometry::kernel().segment_bytes; seg *= 2) {
        if (seg == used.segment_bytes) continue;
        format::Geometry g{seg};
        if (!g.validate().ok() || f.size() < g.device_bytes_min()) continue;
        auto h = inspect::read_header(f, g);
        if (h.ok() && h->state == inspect::State::cache && h->problems.count == 0)
            return "the image reads as a cache with --segment-size " + human_bytes_exact(seg) +
                   ", not " + human_bytes_exact(used.segment_bytes) +
                   " (the superblock does not record the segment size: pass the one it was "
                   "formatted with)";
    }
    return "";
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
        if ((*b)->size() == 0 || (*b)->size() % format::kSectorBytes != 0) {
            say(cmd, "backing '" + vm["backing"].as<std::string>() + "' is " +
                         std::to_string((*b)->size()) +
                         " B: expected a non-zero multiple of 512 B (too small, or not a backing "
                         "device)");
            return kExitProblems;
        }
        out.backing_bytes = (*b)->size();
    }
    auto f = ImageFile::open(vm["pmem"].as<std::string>(), "pmem");
    if (!f.ok()) return fail(cmd, f.status());
    if (auto pid = serve::live_holder(f->path()))
        say(cmd, "note: the cache on '" + f->path() + "' is live (" + serve::holder_text(*pid) +
                     "): these figures are a snapshot");
    auto h = inspect::read_header(*f, *geo);
    if (!h.ok()) return fail(cmd, h.status());
    if (h->state != inspect::State::blank &&
        (h->state != inspect::State::cache || h->problems.count))
        if (auto hint = segment_size_hint(*f, *geo); !hint.empty()) say(cmd, hint);
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
