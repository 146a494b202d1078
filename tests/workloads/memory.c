/*
 * memory: a process holding memory of the kinds CRIU dumps beyond plain
 * private memory, each with known contents and attributes, for a dump and
 * restore to keep.
 *
 *   memory OUTFILE MODE...
 *
 * MODEs (any number of them):
 *   file_shared  a file of the cwd mapped MAP_SHARED read-write, and part of
 *                it read-only at an offset (the file holds the contents)
 *   prot         an area split by mprotect into rw-, r-- and --- parts, an
 *                r-x area, and a PROT_NONE area never touched
 *   growsdown    a MAP_GROWSDOWN area with 1 MiB free below it
 *   madvise      areas advised DONTFORK, DONTDUMP, HUGEPAGE, NOHUGEPAGE,
 *                WIPEONFORK, SEQUENTIAL, RANDOM (and MERGEABLE when the
 *                kernel has KSM)
 *   guard        an area with MADV_GUARD_INSTALL guard regions in it
 *   shmem        shared anonymous memory, mapped twice (mremap of size 0)
 *   memfd        a sealed memfd open at fd 50 (at an offset) and mapped
 *                shared twice, and a second memfd only mapped
 *   mlock        an mlock()ed area
 *   hugetlb      private and shared anonymous hugetlb memory (2 MiB)
 *   hugememfd    a hugetlb memfd "rcriu-huge" of two 2 MiB pages, held
 *                by no fd, mapped shared (S, a pattern) and private (P):
 *                P's first huge page written (its own copy, another
 *                pattern), its second not (the file's); checked: both
 *                patterns, then a write through S shows in P's second
 *                page and not in its first
 *   droppable    MAP_DROPPABLE memory (Linux 6.11), written: after the
 *                restore still droppable (VmFlags dp), writable, and
 *                either as written or dropped (zeros), as the kernel may
 *                do at any time
 *
 * Prints facts as "key value" lines, then "ready", then waits in sigsuspend
 * for SIGUSR1; checks everything it set up and writes PASS or FAIL to
 * OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 2
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

#define PG 4096UL

static const char *out;
static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static unsigned char pattern(unsigned long i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 13) ^ (unsigned)salt * 77u);
}

static void fill(unsigned char *p, size_t n, int salt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(i, salt);
}

static int check(const unsigned char *p, size_t n, int salt)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern(i, salt))
			return 0;
	return 1;
}

static int verdict(const char *msg)
{
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

static char failure[512];
#define FAIL(...)                                                         \
	do {                                                              \
		snprintf(failure, sizeof(failure), "FAIL: " __VA_ARGS__); \
		return 0;                                                 \
	} while (0)

/* The maps line and VmFlags of the area starting at `addr`. */
static int area_info(void *addr, char *perms, char *vmflags, size_t vlen)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int found = 0;
	unsigned long want = (unsigned long)addr;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char p[8];
		size_t w = strcspn(line, " ");
		int header = memchr(line, '-', w) && !memchr(line, ':', w);
		if (header && sscanf(line, "%lx-%lx %7s", &s, &e, p) == 3) {
			if (found)
				break;
			if (s == want) {
				found = 1;
				if (perms)
					strcpy(perms, p);
			}
			continue;
		}
		if (found && !strncmp(line, "VmFlags:", 8)) {
			if (vmflags) {
				size_t n = strlen(line + 8);
				if (n >= vlen)
					n = vlen - 1;
				memcpy(vmflags, line + 8, n);
				vmflags[n] = 0;
				vmflags[strcspn(vmflags, "\n")] = 0;
			}
			break;
		}
	}
	fclose(f);
	return found;
}

static int has_flag(void *addr, const char *flag)
{
	char v[256];
	if (!area_info(addr, NULL, v, sizeof(v)))
		return -1;
	char *t = strtok(v, " ");
	for (; t; t = strtok(NULL, " "))
		if (!strcmp(t, flag))
			return 1;
	return 0;
}

static int perms_are(void *addr, const char *want)
{
	char p[8];
	return area_info(addr, p, NULL, 0) && !strcmp(p, want);
}

/* Whether touching `p` (a read, or a write) faults. */
static sigjmp_buf jb;
static void on_segv(int sig) { (void)sig; siglongjmp(jb, 1); }
static int faults(volatile unsigned char *p, int write)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old);
	int r = 1;
	if (!sigsetjmp(jb, 1)) {
		if (write)
			*p = 1;
		else
			(void)*p;
		r = 0;
	}
	sigaction(SIGSEGV, &old, NULL);
	return r;
}

static uint64_t pagemap_entry(void *p)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	if (fd >= 0) {
		if (pread(fd, &e, 8, (unsigned long)p / PG * 8) != 8)
			e = 0;
		close(fd);
	}
	return e;
}

static void *map(size_t len, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

/* ---- file_shared */
static unsigned char *fs_rw, *fs_ro;
#define FS_LEN (8 * PG)
static int setup_file_shared(void)
{
	int fd = open("shared", O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char *b = malloc(FS_LEN);
	fill(b, FS_LEN, 10);
	if (fd < 0 || write(fd, b, FS_LEN) != (ssize_t)FS_LEN)
		return 0;
	free(b);
	fs_rw = mmap(NULL, FS_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	fd = open("shared", O_RDONLY);
	fs_ro = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 2 * PG);
	close(fd);
	if (fs_rw == MAP_FAILED || fs_ro == MAP_FAILED)
		return 0;
	/* Written through the mapping: only the file has it. */
	fs_rw[3 * PG + 5] = 0xa5;
	printf("fs_rw %p\nfs_ro %p\n", (void *)fs_rw, (void *)fs_ro);
	return 1;
}

static int check_file_shared(void)
{
	for (unsigned long i = 0; i < FS_LEN; i++) {
		unsigned char want = i == 3 * PG + 5 ? 0xa5 : pattern(i, 10);
		if (fs_rw[i] != want)
			FAIL("the shared file mapping holds %#x at %#lx\n", fs_rw[i], i);
	}
	if (memcmp(fs_ro, fs_rw + 2 * PG, 4 * PG))
		FAIL("the read-only shared mapping differs\n");
	/* Still shared: a write shows in the file and the other mapping. */
	fs_rw[4 * PG + 9] = 0x3c;
	int fd = open("shared", O_RDONLY);
	unsigned char c = 0;
	if (fd < 0 || pread(fd, &c, 1, 4 * PG + 9) != 1)
		FAIL("cannot read the shared file\n");
	close(fd);
	if (c != 0x3c || fs_ro[2 * PG + 9] != 0x3c)
		FAIL("the file mapping is no longer shared\n");
	if (!perms_are(fs_rw, "rw-s") || !perms_are(fs_ro, "r--s"))
		FAIL("the shared file mappings' permissions changed\n");
	return 1;
}

/* ---- prot */
static unsigned char *pr_area, *pr_exec, *pr_none;
static int setup_prot(void)
{
	pr_area = map(8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	fill(pr_area, 8 * PG, 20);
	mprotect(pr_area + 3 * PG, 2 * PG, PROT_READ);
	mprotect(pr_area + 6 * PG, 2 * PG, PROT_NONE);
	pr_exec = map(2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	fill(pr_exec, 2 * PG, 21);
	mprotect(pr_exec, 2 * PG, PROT_READ | PROT_EXEC);
	pr_none = map(4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
	printf("pr_area %p\npr_exec %p\npr_none %p\n", (void *)pr_area, (void *)pr_exec,
	       (void *)pr_none);
	return 1;
}

static int check_prot(void)
{
	if (!perms_are(pr_area, "rw-p") || !perms_are(pr_area + 3 * PG, "r--p") ||
	    !perms_are(pr_area + 5 * PG, "rw-p") || !perms_are(pr_area + 6 * PG, "---p") ||
	    !perms_are(pr_exec, "r-xp") || !perms_are(pr_none, "---p"))
		FAIL("an area's protection changed\n");
	if (!faults(pr_area + 3 * PG, 1) || !faults(pr_area + 6 * PG, 0) || !faults(pr_none, 0))
		FAIL("a protected page can be written or read\n");
	mprotect(pr_area, 8 * PG, PROT_READ);
	mprotect(pr_none, 4 * PG, PROT_READ);
	if (!check(pr_area, 8 * PG, 20) || !check(pr_exec, 2 * PG, 21))
		FAIL("protected memory changed\n");
	for (unsigned long i = 0; i < 4 * PG; i++)
		if (pr_none[i])
			FAIL("untouched PROT_NONE memory is not zero\n");
	return 1;
}

/* ---- growsdown */
static unsigned char *gd;
static int setup_growsdown(void)
{
	/* 1 MiB (the stack guard gap) and more kept free below it. */
	unsigned char *r = map(2 * 1024 * 1024 + 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
	gd = mmap(r + 2 * 1024 * 1024, 4 * PG, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
	if (gd == MAP_FAILED)
		return 0;
	munmap(r, 2 * 1024 * 1024);
	fill(gd, 4 * PG, 30);
	printf("growsdown %p\n", (void *)gd);
	return 1;
}

static int check_growsdown(void)
{
	if (has_flag(gd, "gd") != 1)
		FAIL("the growsdown area lost its gd flag\n");
	if (!check(gd, 4 * PG, 30))
		FAIL("growsdown memory changed\n");
	/* It grows: the page below is there for the touching. */
	if (faults(gd - PG, 1))
		FAIL("the growsdown area does not grow\n");
	if (has_flag(gd - PG, "gd") != 1)
		FAIL("the growsdown area did not grow down\n");
	return 1;
}

/* ---- madvise */
struct advised {
	const char *name;
	int advice;
	const char *flag;
	unsigned char *p;
	int ok;
};
static struct advised advs[] = {
	{ "dontfork", MADV_DONTFORK, "dc", NULL, 0 },
	{ "dontdump", MADV_DONTDUMP, "dd", NULL, 0 },
	{ "hugepage", MADV_HUGEPAGE, "hg", NULL, 0 },
	{ "nohugepage", MADV_NOHUGEPAGE, "nh", NULL, 0 },
	{ "wipeonfork", MADV_WIPEONFORK, "wf", NULL, 0 },
	{ "sequential", MADV_SEQUENTIAL, "sr", NULL, 0 },
	{ "random", MADV_RANDOM, "rr", NULL, 0 },
	{ "mergeable", MADV_MERGEABLE, "mg", NULL, 0 },
};
#define NADV (sizeof(advs) / sizeof(advs[0]))
static int setup_madvise(void)
{
	for (unsigned i = 0; i < NADV; i++) {
		/* A PROT_NONE page apart each, so that none merges. */
		unsigned char *r = map(6 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
		advs[i].p = mmap(r + PG, 4 * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		fill(advs[i].p, 4 * PG, 40 + i);
		advs[i].ok = madvise(advs[i].p, 4 * PG, advs[i].advice) == 0;
		if (!advs[i].ok && advs[i].advice != MADV_MERGEABLE)
			return 0;
		printf("madv_%s %p\n", advs[i].name, advs[i].ok ? (void *)advs[i].p : NULL);
	}
	return 1;
}

static int check_madvise(void)
{
	for (unsigned i = 0; i < NADV; i++) {
		if (!advs[i].ok)
			continue;
		if (has_flag(advs[i].p, advs[i].flag) != 1)
			FAIL("the area advised %s lost its %s flag\n", advs[i].name, advs[i].flag);
		if (!check(advs[i].p, 4 * PG, 40 + i))
			FAIL("memory advised %s changed\n", advs[i].name);
	}
	/* And they do what they say in a child. */
	unsigned char *dontfork = advs[0].p, *wipe = advs[4].p;
	pid_t c = fork();
	if (c == 0) {
		if (wipe[0] != 0 || wipe[4 * PG - 1] != 0)
			_exit(3);
		if (!faults(dontfork, 0))
			_exit(4);
		_exit(0);
	}
	int st = -1;
	waitpid(c, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("a child sees the advised areas wrong (status %#x)\n", st);
	return 1;
}

/* ---- guard */
static unsigned char *gu;
static int setup_guard(void)
{
	gu = map(8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	fill(gu, 8 * PG, 50);
	if (madvise(gu + 2 * PG, 2 * PG, MADV_GUARD_INSTALL) ||
	    madvise(gu + 6 * PG, PG, MADV_GUARD_INSTALL)) {
		perror("MADV_GUARD_INSTALL");
		return 0;
	}
	printf("guard %p\n", (void *)gu);
	return 1;
}

static int check_guard(void)
{
	for (int pg = 0; pg < 8; pg++) {
		int guard = pg == 2 || pg == 3 || pg == 6;
		if (guard != !!(pagemap_entry(gu + pg * PG) & (1ULL << 58)))
			FAIL("page %d %s a guard page\n", pg, guard ? "is no longer" : "became");
		if (guard != faults(gu + pg * PG, 0))
			FAIL("page %d %s\n", pg, guard ? "can be read" : "faults");
	}
	for (int pg = 0; pg < 8; pg++) {
		if (pg == 2 || pg == 3 || pg == 6)
			continue;
		for (unsigned long i = 0; i < PG; i++)
			if (gu[pg * PG + i] != pattern(pg * PG + i, 50))
				FAIL("memory around the guard pages changed\n");
	}
	return 1;
}

/* ---- droppable */
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
static unsigned char *dp;
static int setup_droppable(void)
{
	dp = map(4 * PG, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS);
	fill(dp, 4 * PG, 70);
	printf("droppable %p\n", (void *)dp);
	return 1;
}

static int check_droppable(void)
{
	if (has_flag(dp, "dp") != 1)
		FAIL("the droppable area is not droppable\n");
	for (unsigned long pg = 0; pg < 4; pg++) {
		int zeros = 1, written = 1;
		for (unsigned long i = pg * PG; i < (pg + 1) * PG; i++) {
			zeros &= dp[i] == 0;
			written &= dp[i] == pattern(i, 70);
		}
		if (!zeros && !written)
			FAIL("droppable page %lu is neither as written nor dropped\n", pg);
	}
	dp[0] = 1;
	if (dp[0] != 1)
		FAIL("the droppable area is not writable\n");
	return 1;
}

/* ---- shmem */
static unsigned char *sh, *sh2;
#define SH_LEN (16 * PG)
static int setup_shmem(void)
{
	sh = map(SH_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
	/* Pages 4..7 never touched: holes. */
	fill(sh, 4 * PG, 60);
	fill(sh + 8 * PG, 8 * PG, 61);
	sh2 = mremap(sh, 0, SH_LEN, MREMAP_MAYMOVE);
	if (sh2 == MAP_FAILED)
		return 0;
	printf("shmem %p\nshmem_alias %p\n", (void *)sh, (void *)sh2);
	return 1;
}

static int check_shmem(void)
{
	if (!check(sh, 4 * PG, 60) || !check(sh + 8 * PG, 8 * PG, 61))
		FAIL("shared anonymous memory changed\n");
	for (unsigned long i = 4 * PG; i < 8 * PG; i++)
		if (sh[i])
			FAIL("a hole of shared anonymous memory is not zero\n");
	if (memcmp(sh, sh2, SH_LEN))
		FAIL("the two mappings of shared memory differ\n");
	sh[5 * PG] = 0x77;
	if (sh2[5 * PG] != 0x77)
		FAIL("the two mappings of shared memory are no longer one\n");
	if (!perms_are(sh, "rw-s"))
		FAIL("shared anonymous memory is no longer shared\n");
	return 1;
}

/* ---- memfd */
static unsigned char *mf, *mf_ro, *mf2, *mf_priv;
#define MF_SIZE (8 * PG + 100)
#define MF_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)
static int setup_memfd(void)
{
	int fd = syscall(SYS_memfd_create, "rcriu-mem", MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, MF_SIZE))
		return 0;
	unsigned char *b = malloc(MF_SIZE);
	fill(b, MF_SIZE, 70);
	/* Page 5 left a hole. */
	if (pwrite(fd, b, 5 * PG, 0) != (ssize_t)(5 * PG) ||
	    pwrite(fd, b + 6 * PG, MF_SIZE - 6 * PG, 6 * PG) != (ssize_t)(MF_SIZE - 6 * PG))
		return 0;
	free(b);
	mf = mmap(NULL, 9 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	mf_ro = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 6 * PG);
	if (mf == MAP_FAILED || mf_ro == MAP_FAILED)
		return 0;
	/* Private too: page 0 copied on write, page 1 the file's. */
	mf_priv = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (mf_priv == MAP_FAILED)
		return 0;
	mf_priv[10] = 0x42;
	if (fcntl(fd, F_ADD_SEALS, MF_SEALS))
		return 0;
	if (dup2(fd, 50) != 50 || lseek(50, 1234, SEEK_SET) != 1234)
		return 0;
	close(fd);
	/* A second memfd, only mapped. */
	fd = syscall(SYS_memfd_create, "only-mapped", 0);
	if (fd < 0 || ftruncate(fd, 4 * PG))
		return 0;
	mf2 = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (mf2 == MAP_FAILED)
		return 0;
	fill(mf2, 4 * PG, 71);
	printf("memfd_fd 50\nmemfd %p\nmemfd_ro %p\nmemfd2 %p\nmemfd_private %p\n", (void *)mf,
	       (void *)mf_ro, (void *)mf2, (void *)mf_priv);
	return 1;
}

static int check_memfd(void)
{
	char link[256];
	ssize_t n = readlink("/proc/self/fd/50", link, sizeof(link) - 1);
	if (n < 0)
		FAIL("fd 50 is gone\n");
	link[n] = 0;
	if (strcmp(link, "/memfd:rcriu-mem (deleted)"))
		FAIL("fd 50 is %s\n", link);
	if (fcntl(50, F_GET_SEALS) != MF_SEALS)
		FAIL("the memfd's seals are %#x\n", fcntl(50, F_GET_SEALS));
	if (lseek(50, 0, SEEK_CUR) != 1234)
		FAIL("the memfd's position moved\n");
	if ((fcntl(50, F_GETFL) & O_ACCMODE) != O_RDWR)
		FAIL("the memfd is no longer read-write\n");
	struct stat st;
	if (fstat(50, &st) || st.st_size != MF_SIZE)
		FAIL("the memfd's size changed\n");
	unsigned char *b = malloc(MF_SIZE);
	if (pread(50, b, MF_SIZE, 0) != MF_SIZE)
		FAIL("cannot read the memfd\n");
	for (unsigned long i = 0; i < MF_SIZE; i++) {
		unsigned char want = i / PG == 5 ? 0 : pattern(i, 70);
		if (b[i] != want)
			FAIL("the memfd's contents changed at %#lx\n", i);
	}
	if (memcmp(mf, b, MF_SIZE) || memcmp(mf_ro, b + 6 * PG, 2 * PG))
		FAIL("the memfd mappings differ from the file\n");
	if (mf_priv[10] != 0x42 || memcmp(mf_priv, b, 10) || memcmp(mf_priv + 11, b + 11, 2 * PG - 11))
		FAIL("the private memfd mapping changed\n");
	if (!perms_are(mf_priv, "rw-p"))
		FAIL("the private memfd mapping's permissions changed\n");
	free(b);
	mf[7 * PG + 3] = 0x99;
	unsigned char c = 0;
	if (pread(50, &c, 1, 7 * PG + 3) != 1 || c != 0x99 || mf_ro[PG + 3] != 0x99)
		FAIL("the memfd mapping is no longer shared\n");
	if (ftruncate(50, PG) == 0)
		FAIL("the memfd could shrink\n");
	if (!check(mf2, 4 * PG, 71))
		FAIL("the mapped-only memfd changed\n");
	if (!perms_are(mf, "rw-s") || !perms_are(mf_ro, "r--s"))
		FAIL("the memfd mappings' permissions changed\n");
	return 1;
}

/* ---- mlock */
static unsigned char *lk;
static int setup_mlock(void)
{
	lk = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	fill(lk, 4 * PG, 80);
	if (mlock(lk, 4 * PG)) {
		perror("mlock");
		return 0;
	}
	printf("mlock %p\n", (void *)lk);
	return 1;
}

static int check_mlock(void)
{
	if (has_flag(lk, "lo") != 1)
		FAIL("the locked area is no longer locked\n");
	if (!check(lk, 4 * PG, 80))
		FAIL("locked memory changed\n");
	return 1;
}

/* ---- hugetlb */
static unsigned char *hp, *hs;
#define HUGE (2 * 1024 * 1024UL)
static int setup_hugetlb(void)
{
	hp = map(HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB);
	hs = map(HUGE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB);
	fill(hp, HUGE, 90);
	fill(hs, HUGE, 91);
	printf("huge_private %p\nhuge_shared %p\n", (void *)hp, (void *)hs);
	return 1;
}

static int check_hugetlb(void)
{
	if (has_flag(hp, "ht") != 1 || has_flag(hs, "ht") != 1)
		FAIL("hugetlb memory is no longer hugetlb\n");
	if (!check(hp, HUGE, 90) || !check(hs, HUGE, 91))
		FAIL("hugetlb memory changed\n");
	return 1;
}

/* ---- a hugetlb memfd mapped shared and private */
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4
#endif
static unsigned char *hms, *hmp;
static int setup_hugememfd(void)
{
	int fd = syscall(SYS_memfd_create, "rcriu-huge", MFD_HUGETLB);
	if (fd < 0 || ftruncate(fd, 2 * HUGE))
		return 0;
	hms = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	hmp = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (hms == MAP_FAILED || hmp == MAP_FAILED)
		return 0;
	fill(hms, 2 * HUGE, 92);
	fill(hmp, HUGE, 93);
	printf("hugememfd_shared %p\nhugememfd_private %p\n", (void *)hms, (void *)hmp);
	return 1;
}

static int check_hugememfd(void)
{
	if (has_flag(hmp, "ht") != 1 || has_flag(hms, "ht") != 1)
		FAIL("the hugetlb memfd's mappings are no longer hugetlb\n");
	if (!check(hmp, HUGE, 93))
		FAIL("the private copy of the hugetlb memfd changed\n");
	if (!check(hms, 2 * HUGE, 92) || !check(hmp + HUGE, HUGE, 92))
		FAIL("the hugetlb memfd changed\n");
	hms[HUGE + 5] ^= 0xff;
	if (hmp[HUGE + 5] != hms[HUGE + 5])
		FAIL("the private mapping's second page is no longer the file's\n");
	hms[5] ^= 0xff;
	if (hmp[5] == hms[5])
		FAIL("the private mapping's first page is the file's\n");
	return 1;
}

struct mode {
	const char *name;
	int (*setup)(void);
	int (*check)(void);
	int on;
};
static struct mode modes[] = {
	{ "file_shared", setup_file_shared, check_file_shared, 0 },
	{ "prot", setup_prot, check_prot, 0 },
	{ "growsdown", setup_growsdown, check_growsdown, 0 },
	{ "madvise", setup_madvise, check_madvise, 0 },
	{ "guard", setup_guard, check_guard, 0 },
	{ "shmem", setup_shmem, check_shmem, 0 },
	{ "memfd", setup_memfd, check_memfd, 0 },
	{ "mlock", setup_mlock, check_mlock, 0 },
	{ "hugetlb", setup_hugetlb, check_hugetlb, 0 },
	{ "hugememfd", setup_hugememfd, check_hugememfd, 0 },
	{ "droppable", setup_droppable, check_droppable, 0 },
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	out = argv[1];
	for (int a = 2; a < argc; a++) {
		unsigned i;
		for (i = 0; i < NMODES; i++)
			if (!strcmp(argv[a], modes[i].name))
				modes[i].on = 1;
		if (!strcmp(argv[a], "all"))
			for (i = 0; i < NMODES; i++)
				modes[i].on = strcmp(modes[i].name, "hugetlb") != 0 &&
					      strcmp(modes[i].name, "hugememfd") != 0 &&
					      strcmp(modes[i].name, "droppable") != 0;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	for (unsigned i = 0; i < NMODES; i++)
		if (modes[i].on && !modes[i].setup()) {
			fprintf(stderr, "setting up %s failed\n", modes[i].name);
			return 2;
		}

	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);
	sigprocmask(SIG_SETMASK, &waitmask, NULL);

	for (unsigned i = 0; i < NMODES; i++)
		if (modes[i].on && !modes[i].check())
			return verdict(failure);
	return verdict("PASS\n");
}
