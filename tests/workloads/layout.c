/*
 * layout: memory whose layout changes between pre-dumps. Each page's
 * contents are a function of its number and a version kept in a table
 * (version 0: zeroes), so that the whole memory can be checked at the
 * end. On SIGUSR2 it takes a step, then writes the step's number to the
 * file "steps" in its directory:
 *   - rewrites 37 random pages of A (16 MiB), one of them by read(2)
 *     from a pipe (a write by the kernel);
 *   - drops 3 pages of A (MADV_DONTNEED: they read as zeroes);
 *   - makes 64 KiB of A PROT_NONE and readable again;
 *   - unmaps B and maps a new B (1 MiB), filled;
 *   - moves C (4 MiB, filled) elsewhere with mremap;
 *   - rewrites a page of H (4 MiB, MADV_HUGEPAGE, 2 MiB aligned);
 *   - copies on write 2 pages of F (a private mapping of a file of 64
 *     pages) and drops one (MADV_DONTNEED: it reads as the file again).
 *
 *   layout OUTFILE
 *
 * On SIGUSR1: every page of A, B, C, H and F must be as its version says
 * (PASS).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define NA (4096)
#define NB (256)
#define NC (1024)
#define NH (1024)
#define NF (64)

static volatile sig_atomic_t stop, step;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void on_usr2(int sig) { (void)sig; step = 1; }

struct region {
	char *base;
	long n;
	uint32_t *ver;
	uint32_t tag;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(char *p, uint32_t tag, long i, uint32_t v)
{
	uint64_t *w = (uint64_t *)p;
	uint64_t x = ((uint64_t)tag << 40) ^ ((uint64_t)i << 20) ^ v ^ 0x5bd1e995;
	for (int k = 0; k < PAGE / 8; k++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		w[k] = v ? x : 0;
	}
}

static void write_page(struct region *r, long i)
{
	r->ver[i]++;
	fill(r->base + i * PAGE, r->tag, i, r->ver[i]);
}

static void fill_all(struct region *r)
{
	for (long i = 0; i < r->n; i++)
		write_page(r, i);
}

static int check(struct region *r, char *msg, size_t len)
{
	static char want[PAGE];
	for (long i = 0; i < r->n; i++) {
		fill(want, r->tag, i, r->ver[i]);
		if (memcmp(want, r->base + i * PAGE, PAGE)) {
			snprintf(msg, len, "FAIL: page %ld of region %c (version %u) is not what was written\n",
				 i, (char)r->tag, r->ver[i]);
			return 1;
		}
	}
	return 0;
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

static char *map(long pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	return p;
}

static uint32_t *table(long n)
{
	uint32_t *t = calloc(n, sizeof(*t));
	if (!t)
		exit(2);
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	sigset_t both, waitmask;
	sigemptyset(&both);
	sigaddset(&both, SIGUSR1);
	sigaddset(&both, SIGUSR2);
	sigprocmask(SIG_BLOCK, &both, NULL);

	struct region a = { map(NA), NA, table(NA), 'A' };
	struct region b = { map(NB), NB, table(NB), 'B' };
	struct region c = { map(NC), NC, table(NC), 'C' };
	/* H: 2 MiB aligned, asking for huge pages. */
	char *h = map(NH + 512);
	h = (char *)(((uintptr_t)h + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
	madvise(h, NH * PAGE, MADV_HUGEPAGE);
	struct region hr = { h, NH, table(NH), 'H' };
	fill_all(&a);
	fill_all(&b);
	fill_all(&c);
	fill_all(&hr);
	int pfd[2];
	if (pipe(pfd))
		return 2;
	/* F: the file holds version 1 of each page. */
	int ffd = open("ffile", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ffd < 0)
		return 2;
	static char fpage[PAGE];
	for (long i = 0; i < NF; i++) {
		fill(fpage, 'F', i, 1);
		if (write(ffd, fpage, PAGE) != PAGE)
			return 2;
	}
	char *f = mmap(NULL, NF * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd, 0);
	if (f == MAP_FAILED)
		return 2;
	close(ffd);
	struct region fr = { f, NF, table(NF), 'F' };
	for (long i = 0; i < NF; i++)
		fr.ver[i] = 1;
	for (long i = 0; i < NF; i += 2)
		write_page(&fr, i);

	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	sigdelset(&waitmask, SIGUSR2);
	int steps = 0;
	while (!stop) {
		sigsuspend(&waitmask);
		if (!step)
			continue;
		step = 0;
		for (int k = 0; k < 36; k++)
			write_page(&a, (long)(next() % NA));
		/* One page written by the kernel. */
		long i = (long)(next() % NA);
		static char buf[PAGE];
		a.ver[i]++;
		fill(buf, a.tag, i, a.ver[i]);
		if (write(pfd[1], buf, PAGE) != PAGE || read(pfd[0], a.base + i * PAGE, PAGE) != PAGE)
			return 2;
		for (int k = 0; k < 3; k++) {
			long d = (long)(next() % NA);
			madvise(a.base + d * PAGE, PAGE, MADV_DONTNEED);
			a.ver[d] = 0;
		}
		long p = (long)(next() % (NA - 16));
		mprotect(a.base + p * PAGE, 16 * PAGE, PROT_NONE);
		mprotect(a.base + p * PAGE, 16 * PAGE, PROT_READ | PROT_WRITE);
		munmap(b.base, NB * PAGE);
		b.base = map(NB);
		memset(b.ver, 0, NB * sizeof(*b.ver));
		b.tag++;
		fill_all(&b);
		char *to = map(NC);
		c.base = mremap(c.base, NC * PAGE, NC * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (c.base == MAP_FAILED)
			return 2;
		write_page(&hr, (long)(next() % NH));
		write_page(&fr, (long)(next() % NF));
		write_page(&fr, (long)(next() % NF));
		/* An even page: copied on write at the start, so there. */
		long z = 2 * (long)(next() % (NF / 2));
		madvise(fr.base + z * PAGE, PAGE, MADV_DONTNEED);
		fr.ver[z] = 1;
		steps++;
		FILE *f = fopen("steps", "w");
		if (!f)
			return 2;
		fprintf(f, "%d\n", steps);
		fclose(f);
	}
	char msg[120];
	if (check(&a, msg, sizeof(msg)) || check(&b, msg, sizeof(msg)) ||
	    check(&c, msg, sizeof(msg)) || check(&hr, msg, sizeof(msg)) ||
	    check(&fr, msg, sizeof(msg)))
		return verdict(argv[1], msg);
	return verdict(argv[1], "PASS\n");
}
