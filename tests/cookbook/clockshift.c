/*
 * LD_PRELOAD shim: shifts the wall clock (CLOCK_REALTIME*) of the process it is loaded
 * into by an offset the test can change while the process runs. Monotonic clocks stay
 * untouched, so timers, timeouts and rate limits behave normally.
 *
 * The offset (signed 64-bit nanoseconds, native byte order) is the first 8 bytes of the
 * file named by $CLOCKSHIFT_FILE, mapped shared: a write to the file moves the clock.
 *
 * Used by the cookbook runner to seed audit records "last month" (see recipes.py).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static volatile int64_t *offset_ns = NULL;
static int mapped = 0; /* 0: not tried, 1: mapped, -1: unavailable */

static void map_offset(void) {
    const char *path = getenv("CLOCKSHIFT_FILE");
    void *m = MAP_FAILED;
    if (path != NULL) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            m = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
            close(fd);
        }
    }
    if (m == MAP_FAILED) {
        __atomic_store_n(&mapped, -1, __ATOMIC_RELEASE);
    } else {
        offset_ns = (volatile int64_t *)m;
        __atomic_store_n(&mapped, 1, __ATOMIC_RELEASE);
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_gettime_fn real = NULL;
    if (real == NULL) {
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    }
    int rc = real(id, ts);
    if (rc != 0 || (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE)) {
        return rc;
    }
    if (__atomic_load_n(&mapped, __ATOMIC_ACQUIRE) == 0) {
        map_offset();
    }
    if (__atomic_load_n(&mapped, __ATOMIC_ACQUIRE) != 1) {
        return rc;
    }
    int64_t total = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec + *offset_ns;
    ts->tv_sec = (time_t)(total / 1000000000LL);
    ts->tv_nsec = (long)(total % 1000000000LL);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000L;
        ts->tv_sec -= 1;
    }
    return rc;
}
