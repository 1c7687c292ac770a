/* libcurl's own floor on this machine: HEADs of one object with one reused easy
 * handle, nothing else (no signing, no Python), client CPU per request from
 * getrusage. The figure the per-request rows of bench/RESULTS.md are held against.
 *
 *   gcc -O2 -Wall -Wextra -Ibuild/deps/include bench/curl_floor.c -o /tmp/curl_floor \
 *       build/deps/lib/libcurl.a -lssl -lcrypto -lz -lpthread
 *   /tmp/curl_floor http://127.0.0.1:PORT/bucket/key 5000      # a public-read object
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static size_t
sink(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void
cpu(double *user, double *sys)
{
    struct rusage r;

    getrusage(RUSAGE_SELF, &r);
    *user = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6;
    *sys = (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
    CURL *h;
    long code = 0;
    int i, n;
    double u0, s0, u1, s1;
    struct timespec a, b;

    if (argc != 3 || (n = atoi(argv[2])) < 1) {
        fprintf(stderr, "usage: %s URL REQUESTS\n", argv[0]);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, argv[1]);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    for (i = 0; i < 200; i++)   /* warm up: the connection, the caches */
        curl_easy_perform(h);
    cpu(&u0, &s0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++)
        if (curl_easy_perform(h) != CURLE_OK) {
            fprintf(stderr, "request %d failed\n", i);
            return 1;
        }
    clock_gettime(CLOCK_MONOTONIC, &b);
    cpu(&u1, &s1);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    printf("HTTP %ld, %s: CPU %.1f us per request (user %.1f, sys %.1f), wall %.1f us\n", code,
           curl_version(), (u1 - u0 + s1 - s0) / n * 1e6, (u1 - u0) / n * 1e6,
           (s1 - s0) / n * 1e6,
           ((double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9) / n * 1e6);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return 0;
}
