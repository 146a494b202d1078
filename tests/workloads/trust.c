// build: -pthread
/*
 * trust: a process to kill dumps of. Its state is in its memory and in its
 * threads' registers, and it notices any change a dump leaves behind.
 *
 *   trust OUTFILE MIB NTHREADS [restored]
 *
 * MIB MiB of anonymous memory, every page written with a pattern; the
 * main thread waits in sigsuspend. NTHREADS threads (0 for none) each
 * keep a computation in registers, general and SSE, in one of three ways
 * by turn: spinning; sleeping 1 ms between steps (clock_nanosleep, a
 * restart block when interrupted); or, after 4096 steps, blocked in
 * read(2) on an empty pipe (ERESTARTSYS when interrupted) until the end.
 * Neither the sleep nor the read may ever fail; but "restored" lets a
 * sleep end with EINTR, as a restored process's does (the images hold a
 * sleep's restart block as EINTR, as CRIU's do).
 *
 * On SIGUSR1 the main thread checks the pattern, stops the threads (each
 * recomputes its state from scratch for the steps it made and compares),
 * writes PASS or the first failure to OUTFILE and exits 0 or 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAXT 16

static volatile sig_atomic_t got_usr1;
static atomic_int stop;
static char fail[256];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int wake[MAXT][2];
static int eintr_ok;

static void on_usr1(int sig) { (void)sig; got_usr1 = 1; }

static void failed(const char *msg)
{
	pthread_mutex_lock(&fail_lock);
	if (!fail[0])
		snprintf(fail, sizeof(fail), "%s", msg);
	pthread_mutex_unlock(&fail_lock);
}

struct state {
	uint64_t a, b, c, d;
	double x;
};

static inline void step(struct state *s)
{
	s->a = s->a * 6364136223846793005ull + 1442695040888963407ull;
	s->b ^= s->a >> 17;
	s->c += s->b | 1;
	s->d = ((s->d ^ s->c) << 13) | ((s->d ^ s->c) >> 51);
	s->x = s->x * 1.0000001 + (double)(s->a & 0xff) * 0.5;
	if (s->x > 1e12)
		s->x -= 1e12;
}

static void *worker(void *arg)
{
	long i = (long)arg;
	int mode = i % 3;
	char msg[128];
	struct state s = { (uint64_t)i + 1, 2, 3, 4, 0.5 };
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		step(&s);
		n++;
		if (mode == 1) {
			struct timespec ts = { 0, 1000000 };
			int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
			if (r != 0 && !(r == EINTR && eintr_ok) && !atomic_load(&stop)) {
				snprintf(msg, sizeof(msg), "thread %ld: clock_nanosleep returned %d", i, r);
				failed(msg);
			}
		} else if (mode == 2 && (n & 0xfff) == 0) {
			char c;
			ssize_t r = read(wake[i][0], &c, 1);
			if (r != 1) {
				snprintf(msg, sizeof(msg), "thread %ld: read returned %zd errno %d", i, r, errno);
				failed(msg);
			}
		}
	}
	struct state t = { (uint64_t)i + 1, 2, 3, 4, 0.5 };
	for (uint64_t k = 0; k < n; k++)
		step(&t);
	if (memcmp(&s, &t, sizeof(s)) != 0) {
		snprintf(msg, sizeof(msg), "thread %ld: its computation went wrong after %lu steps", i,
			 (unsigned long)n);
		failed(msg);
	}
	return NULL;
}

static int verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0 || write(fd, "\n", 1) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	size_t len = (size_t)atol(argv[2]) << 20;
	int nthreads = atoi(argv[3]);
	eintr_ok = argc > 4 && strcmp(argv[4], "restored") == 0;
	if (nthreads > MAXT)
		nthreads = MAXT;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);

	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < len / 8; i++)
		mem[i] = i * 0x9e3779b97f4a7c15ull;

	pthread_t th[MAXT];
	for (long i = 0; i < nthreads; i++) {
		if (pipe(wake[i]) < 0)
			return 2;
		pthread_create(&th[i], NULL, worker, (void *)i);
	}

	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigset_t wait = old;
	sigdelset(&wait, SIGUSR1);
	while (!got_usr1)
		sigsuspend(&wait);

	for (size_t i = 0; i < len / 8; i++)
		if (mem[i] != i * 0x9e3779b97f4a7c15ull) {
			char msg[96];
			snprintf(msg, sizeof(msg), "memory changed at offset %zu", i * 8);
			failed(msg);
			break;
		}
	atomic_store(&stop, 1);
	for (int i = 0; i < nthreads; i++) {
		if (write(wake[i][1], "x", 1) != 1)
			failed("waking a reader");
		pthread_join(th[i], NULL);
	}
	return verdict(argv[1], fail[0] ? fail : "PASS");
}
