/*
 * cow: memory a parent and its children share after fork (copy on write).
 *
 *   cow OUTFILE NKIDS MIB KIB [file]
 *
 * The root fills MIB MiB of private anonymous memory (each page one word
 * repeated, from its index) and forks NKIDS children. Child i rewrites
 * KIB KiB of it, from page i * KIB / 4 on (wrapping), with its own words;
 * every third child also drops (MADV_DONTNEED) the page right after its
 * rewritten run, which then reads as zeros; the other pages stay shared
 * with the root. Children wait in read(2) on a pipe from the root, the
 * root in sigsuspend.
 *
 * With "file", the memory is a private mapping of a file (cow.data in
 * the cwd, each page another word repeated), which the root rewrites but
 * for its last page: a dropped page reads as the file's again, not zeros.
 *
 * Prints "procI PID" for each child, "ready". On SIGUSR1 the root checks
 * its own memory, then asks each child to check its own and answer. PASS
 * or the first failure (with the process that saw it) goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static uint64_t *area;
static long npages, kpages;
static int in_file;

static uint64_t word(long page, int kid)
{
	uint64_t w = 0x5a5a000000000000ull ^ ((uint64_t)page * 0x9e3779b97f4a7c15ull);
	return kid ? w ^ ((uint64_t)kid << 48) : w;
}

static void fill(long page, uint64_t w)
{
	uint64_t *p = area + page * WORDS;
	for (int i = 0; i < WORDS; i++)
		p[i] = w;
}

static int holds(long page, uint64_t w)
{
	const uint64_t *p = area + page * WORDS;
	for (int i = 0; i < WORDS; i++)
		if (p[i] != w)
			return 0;
	return 1;
}

/* What page `page` of the file holds. */
static uint64_t file_word(long page) { return word(page, 0) ^ 0x00000000f11ef11eull; }

/* What page `page` holds in the root: its own word, or the file's. */
static uint64_t root_word(long page)
{
	return in_file && page == npages - 1 ? file_word(page) : word(page, 0);
}

/* What page `page` holds in child `kid` (0: the root). */
static uint64_t expected(long page, int kid)
{
	if (!kid)
		return root_word(page);
	long first = ((long)(kid - 1) * kpages) % npages;
	long at = (page - first + npages) % npages;
	if (at < kpages)
		return word(page, kid);
	if (kid % 3 == 0 && at == kpages)
		return in_file ? file_word(page) : 0;
	return root_word(page);
}

/* The private mapping of cow.data, made with the file's words. */
static uint64_t *map_file(void)
{
	int fd = open("cow.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return MAP_FAILED;
	uint64_t buf[WORDS];
	for (long p = 0; p < npages; p++) {
		for (int i = 0; i < WORDS; i++)
			buf[i] = file_word(p);
		if (write(fd, buf, PAGE) != PAGE)
			return MAP_FAILED;
	}
	void *m = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	return m;
}

static const char *check(int kid)
{
	static char why[128];
	for (long p = 0; p < npages; p++)
		if (!holds(p, expected(p, kid))) {
			snprintf(why, sizeof(why), "FAIL: process %d: page %ld of its memory\n",
				 (int)getpid(), p);
			return why;
		}
	return NULL;
}

static void child(int kid, int in, int ans)
{
	long first = ((long)(kid - 1) * kpages) % npages;
	for (long i = 0; i < kpages; i++) {
		long p = (first + i) % npages;
		fill(p, word(p, kid));
	}
	if (kid % 3 == 0)
		madvise(area + ((first + kpages) % npages) * WORDS, PAGE, MADV_DONTNEED);
	/* Told it is set. */
	if (write(ans, "s", 1) != 1)
		_exit(3);
	char c;
	if (read(in, &c, 1) != 1)
		_exit(3);
	const char *bad = check(kid);
	const char *m = bad ? bad : "PASS\n";
	if (write(ans, m, strlen(m)) < 0)
		_exit(4);
	_exit(bad ? 1 : 0);
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	int nkids = atoi(argv[2]);
	npages = atol(argv[3]) * (1 << 20) / PAGE;
	kpages = atol(argv[4]) * 1024 / PAGE;
	if (nkids < 1 || npages < 1 || kpages < 1 || kpages >= npages)
		return 2;
	/* Two pipes a child: as many fds as the hard limit allows. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGUSR1, on_usr1);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	in_file = argc > 5 && !strcmp(argv[5], "file");
	if (in_file)
		area = map_file();
	else
		area = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return 2;
	for (long p = 0; p < npages - in_file; p++)
		fill(p, word(p, 0));
	int *outs = calloc(nkids, sizeof(int)), *answers = calloc(nkids, sizeof(int));
	if (!outs || !answers)
		return 2;
	for (int k = 1; k <= nkids; k++) {
		int down[2], up[2];
		if (pipe(down) || pipe(up))
			return 2;
		pid_t p = fork();
		if (p < 0)
			return 2;
		if (p == 0) {
			for (int j = 0; j < k - 1; j++) {
				close(outs[j]);
				close(answers[j]);
			}
			close(down[1]);
			close(up[0]);
			child(k, down[0], up[1]);
		}
		close(down[0]);
		close(up[1]);
		outs[k - 1] = down[1];
		answers[k - 1] = up[0];
		char c;
		if (read(up[0], &c, 1) != 1)
			return 2;
		printf("proc%d %d\n", k, (int)p);
	}
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&old);

	const char *bad = check(0);
	char result[256] = "";
	if (bad)
		snprintf(result, sizeof(result), "%s", bad);
	for (int k = 0; k < nkids && !result[0]; k++) {
		if (write(outs[k], "c", 1) != 1) {
			snprintf(result, sizeof(result), "FAIL: child %d does not listen\n", k + 1);
			break;
		}
		ssize_t got = read(answers[k], result, sizeof(result) - 1);
		if (got <= 0) {
			snprintf(result, sizeof(result), "FAIL: child %d does not answer\n", k + 1);
			break;
		}
		result[got] = 0;
		if (!strcmp(result, "PASS\n"))
			result[0] = 0;
	}
	for (int k = 0; k < nkids; k++)
		close(outs[k]);
	while (wait(NULL) > 0)
		;
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 2;
	fputs(result[0] ? result : "PASS\n", f);
	fclose(f);
	return result[0] ? 1 : 0;
}
