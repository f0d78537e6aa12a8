// bench_knn_faiss: FAISS exact inner-product kNN (IndexFlatIP) on the rows bench_knn
// wrote, for the comparison table of benchmarks/bench_knn_faiss.sh. Benchmark only:
// FAISS is never part of the library or of make check.
//
//   bench_knn_faiss DATA N DIM K REPS THREADS [REF]
//
// DATA: raw float32 [N, DIM] (knn_data_N.bin). Each rep times what bench_knn times for
// its backends: L2 normalisation (faiss::fvec_renorm_L2), building the index, and the
// search of every row for K + 1 neighbours (self dropped). REF (knn_ref_N.bin, int64
// [N, K]): MMSA-C's exact lists, to report the fraction of identical lists and the
// recall. Prints one CSV row in bench_knn.csv's columns.
#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static double peak_rss_mib()
{
    FILE *f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "VmHWM:", 6) == 0) kb = std::atof(line + 6);
    std::fclose(f);
    return kb / 1024.0;
}

static bool read_all(const char *path, void *buf, size_t bytes)
{
    FILE *f = std::fopen(path, "rb");
    if (!f) return false;
    size_t got = std::fread(buf, 1, bytes, f);
    std::fclose(f);
    return got == bytes;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        std::fprintf(stderr, "usage: bench_knn_faiss DATA N DIM K REPS THREADS [REF]\n");
        return 2;
    }
    const char *data = argv[1];
    int64_t n = std::atoll(argv[2]);
    int dim = std::atoi(argv[3]), k = std::atoi(argv[4]), reps = std::atoi(argv[5]), threads = std::atoi(argv[6]);
    if (n <= k || dim < 1 || k < 1 || reps < 1 || threads < 1) {
        std::fprintf(stderr, "bench_knn_faiss: bad arguments\n");
        return 2;
    }
    omp_set_num_threads(threads);
    std::vector<float> x((size_t)n * dim);
    if (!read_all(data, x.data(), x.size() * sizeof(float))) {
        std::fprintf(stderr, "bench_knn_faiss: cannot read %lld x %d floats from %s\n", (long long)n, dim, data);
        return 1;
    }
    std::vector<float> dist((size_t)n * (k + 1));
    std::vector<faiss::Index::idx_t> idx((size_t)n * (k + 1));
    std::vector<double> t(reps);
    for (int r = 0; r < reps; r++) {
        auto t0 = std::chrono::steady_clock::now();
        std::vector<float> xn(x);
        faiss::fvec_renorm_L2(dim, n, xn.data());
        faiss::IndexFlatIP index(dim);
        index.add(n, xn.data());
        index.search(n, xn.data(), k + 1, dist.data(), idx.data());
        t[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    double rss = peak_rss_mib();
    std::sort(t.begin(), t.end());
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);

    // self dropped: the K best of the K + 1 other than the row itself
    std::vector<int64_t> lists((size_t)n * k);
    for (int64_t i = 0; i < n; i++) {
        int m = 0;
        for (int j = 0; j <= k && m < k; j++)
            if (idx[(size_t)i * (k + 1) + j] != i) lists[(size_t)i * k + m++] = idx[(size_t)i * (k + 1) + j];
    }
    double identical = -1, recall = -1;
    if (argc > 7) {
        std::vector<int64_t> ref((size_t)n * k);
        if (!read_all(argv[7], ref.data(), ref.size() * sizeof(int64_t))) {
            std::fprintf(stderr, "bench_knn_faiss: cannot read the reference lists %s\n", argv[7]);
            return 1;
        }
        int64_t same = 0, hits = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t *a = &lists[(size_t)i * k], *b = &ref[(size_t)i * k];
            same += std::equal(a, a + k, b);
            for (int p = 0; p < k; p++) hits += std::find(b, b + k, a[p]) != b + k;
        }
        identical = (double)same / (double)n;
        recall = (double)hits / ((double)n * k);
    }
    double gflops = 2.0 * (double)n * (double)n * dim / med * 1e-9;
    std::printf("%lld,%d,%d,faiss-flatip,1,%d,-,%.5f,%.5f,%d,%.2f,,0,0,,%.2f,%.4f,%.4f\n", (long long)n, dim, k, threads,
                med, t[0], reps, rss, gflops, identical, recall);
    return 0;
}
