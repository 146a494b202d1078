// build: -pthread
/*
 * rewriter: a large anonymous area that a thread keeps rewriting, page
 * after random page, under a running checksum: for each page a table
 * (in the same process's memory) holds the checksum of its contents,
 * written right after the page. A dump that captured pages at different
 * moments, or from a process still running, restores pages that disagree
 * with the table.
 *
 *   rewriter OUTFILE MIB [PAUSE_US]
 *
 * With PAUSE_US the writer pauses that long after each page (a process
 * that rewrites a part of its memory at a given pace).
 *
 * Prints "pages N" and "counter ADDR" (where the count of pages
 * rewritten is, an unsigned long) before "ready". On SIGUSR1 the writer finishes the page
 * it is writing and stops; every page must match its checksum (PASS), and
 * the writer must have rewritten pages since the start.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static uint64_t *mem, *table;
static long npages;
static atomic_ulong rewrites;
static atomic_int quit;
static long pause_us;

static uint64_t checksum(const uint64_t *p)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < WORDS; i++)
		s = (s ^ p[i]) * 0x100000001b3ull;
	return s;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void write_page(long i, uint64_t *rng)
{
	uint64_t *p = mem + i * WORDS;
	for (int w = 0; w < WORDS; w++)
		p[w] = next(rng);
	table[i] = checksum(p);
}

static void *writer(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
	while (!atomic_load(&quit)) {
		write_page((long)(next(&rng) % (uint64_t)npages), &rng);
		atomic_fetch_add(&rewrites, 1);
		if (pause_us > 0)
			usleep(pause_us);
	}
	return NULL;
}

static int verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	npages = atol(argv[2]) * 256;
	pause_us = argc > 3 ? atol(argv[3]) : 0;
	if (npages < 1)
		return 2;
	signal(SIGUSR1, on_usr1);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	table = mmap(NULL, npages * 8, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || table == MAP_FAILED)
		return 2;
	uint64_t rng = 88172645463325252ull;
	for (long i = 0; i < npages; i++)
		write_page(i, &rng);
	pthread_t t;
	pthread_create(&t, NULL, writer, (void *)(uintptr_t)getpid());
	while (atomic_load(&rewrites) < (pause_us > 0 ? 10 : 1000))
		sched_yield();

	printf("pages %ld\ncounter %p\nready\n", npages, (void *)&rewrites);
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);
	atomic_store(&quit, 1);
	pthread_join(t, NULL);
	for (long i = 0; i < npages; i++)
		if (checksum(mem + i * WORDS) != table[i]) {
			char msg[80];
			snprintf(msg, sizeof(msg), "FAIL: page %ld disagrees with its checksum\n", i);
			return verdict(argv[1], msg);
		}
	return verdict(argv[1], "PASS\n");
}
