/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * replay_main.cpp: runs files through a fuzz target's LLVMFuzzerTestOneInput
 * once each, without libFuzzer (make fuzz-replay, part of make test).
 *
 *   replay PATH...    each PATH a file or a directory (its files, sorted;
 *                     names starting with "." or "README" are skipped)
 *
 * A failed check aborts (the sanitizers report the rest); the exit status
 * is 0 when every input ran.
 */

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

bool skipped(const std::string &name)
{
    return name.empty() || name[0] == '.' || name.rfind("README", 0) == 0;
}

void collect(const std::string &path, std::vector<std::string> *files)
{
    struct stat st;

    if (stat(path.c_str(), &st) != 0) {
        return;                         /* an absent directory: no inputs */
    }

    if (!S_ISDIR(st.st_mode)) {
        files->push_back(path);
        return;
    }

    DIR *d = opendir(path.c_str());
    if (d == nullptr) {
        return;
    }

    std::vector<std::string> names;
    while (struct dirent *e = readdir(d)) {
        if (!skipped(e->d_name)) {
            names.push_back(e->d_name);
        }
    }
    closedir(d);

    std::sort(names.begin(), names.end());
    for (const auto &n : names) {
        collect(path + "/" + n, files);
    }
}

} // namespace


int
main(int argc, char **argv)
{
    std::vector<std::string> files;

    for (int i = 1; i < argc; i++) {
        collect(argv[i], &files);
    }

    for (const auto &f : files) {
        std::ifstream in(f, std::ios::binary);
        if (!in) {
            std::fprintf(stderr, "%s: cannot read %s\n", argv[0], f.c_str());
            return 1;
        }
        std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
        LLVMFuzzerTestOneInput(data.data(), data.size());
    }

    std::string name = argv[0];
    std::printf("%s: %zu inputs replayed\n",
                name.substr(name.rfind('/') + 1).c_str(), files.size());
    return 0;
}
