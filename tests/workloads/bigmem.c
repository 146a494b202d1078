/*
 * bigmem: a large anonymous area, every page written with a pattern, for
 * measuring how fast memory is dumped and restored.
 *
 *   bigmem OUTFILE MIB
 *
 * Prints "addr 0x..." and "len N" before "ready"; on SIGUSR1 checks the
 * pattern and writes PASS or FAIL to OUTFILE.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	size_t len = (size_t)atol(argv[2]) << 20;
	signal(SIGUSR1, on_usr1);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &waitmask);
	uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < len / 8; i++)
		p[i] = i * 0x9e3779b97f4a7c15ull;
	printf("addr %p\nlen %zu\nready\n", (void *)p, len);
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	/* SIGUSR1 stays blocked but in sigsuspend: one that comes before the
	 * wait (right after a restore, say) waits for it, it is not lost. */
	while (!stop)
		sigsuspend(&waitmask);
	sigprocmask(SIG_SETMASK, &waitmask, NULL);
	for (size_t i = 0; i < len / 8; i++)
		if (p[i] != i * 0x9e3779b97f4a7c15ull)
			return verdict(argv[1], "FAIL: memory changed\n");
	return verdict(argv[1], "PASS\n");
}
