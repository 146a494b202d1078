/*
 * manyvmas: N pages of anonymous memory, each written with a pattern,
 * either as one area ("whole") or as N areas of one page each ("split":
 * every other page of a 2N-page reservation is unmapped, so that no two
 * merge), for measuring what each area costs a dump and a restore.
 *
 *   manyvmas OUTFILE N whole|split
 *
 * Prints "areas N" before "ready"; on SIGUSR1 checks every page and that
 * the split areas are still apart, and writes PASS or FAIL to OUTFILE.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

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

static unsigned char *page_of(unsigned char *base, long i, int split)
{
	return base + (split ? 2 * i : i) * PAGE;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long n = atol(argv[2]);
	int split = strcmp(argv[3], "split") == 0;
	if (n < 1)
		return 2;
	signal(SIGUSR1, on_usr1);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	size_t len = (split ? 2 * n : n) * PAGE;
	unsigned char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return 2;
	for (long i = 0; i < n; i++) {
		unsigned char *p = page_of(base, i, split);
		memset(p, (int)(i * 7 + 1), PAGE);
		memcpy(p, &i, sizeof(i));
		if (split && munmap(p + PAGE, PAGE))
			return 2;
	}
	printf("areas %ld\nready\n", split ? n : 1);
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	for (long i = 0; i < n; i++) {
		unsigned char *p = page_of(base, i, split);
		long v;
		memcpy(&v, p, sizeof(v));
		if (v != i || p[PAGE - 1] != (unsigned char)(i * 7 + 1))
			return verdict(argv[1], "FAIL: a page changed\n");
		if (split) {
			/* The hole after each page is still a hole. */
			unsigned char vec;
			if (mincore(p + PAGE, PAGE, &vec) == 0)
				return verdict(argv[1], "FAIL: a hole got mapped\n");
		}
	}
	return verdict(argv[1], "PASS\n");
}
