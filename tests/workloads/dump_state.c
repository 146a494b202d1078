/*
 * dump_state: a dynamically linked process holding everything the first
 * dump slice covers, each piece known, for a test to find in the images:
 * signal actions, a blocked mask, interval timers, an alternate stack,
 * umask, groups, no_new_privs, child_subreaper, pdeath signal, its own
 * executable open read-only at fd 42 at a known position, and memory of
 * several kinds with known contents (anonymous, heap, a private file
 * mapping with every other page written, PROT_NONE, the stack).
 *
 *   dump_state OUTFILE
 *
 * Prints what it set as "key value" lines before "ready", then sleeps in
 * sigsuspend(). On SIGUSR1 it checks its memory, mask, signal actions, timers
 * and fd, and writes PASS or FAIL to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define REGION (16 * 4096)
#define HEAP (8 * 4096)

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void h_info(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; }
static void h_plain(int sig) { (void)sig; }

struct ksigaction {
	unsigned long handler, flags, restorer, mask;
};

static unsigned char pattern(unsigned long i, int salt)
{
	return (unsigned char)((i * 2654435761u) >> 13) ^ (unsigned char)salt;
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

static struct ksigaction kact(int sig)
{
	struct ksigaction k;
	syscall(SYS_rt_sigaction, sig, NULL, &k, 8);
	return k;
}

static struct ksigaction before[65];

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h_info;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGQUIT);
	sigaction(SIGUSR2, &sa, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h_plain;
	sa.sa_flags = SA_ONSTACK | SA_NODEFER;
	sigaction(SIGALRM, &sa, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h_plain;
	sa.sa_flags = SA_RESETHAND;
	sigaddset(&sa.sa_mask, SIGRTMIN + 5);
	sigaction(SIGRTMIN + 3, &sa, NULL);

	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		before[s] = kact(s);
		printf("sig%d %#lx,%#lx,%#lx,%#lx\n", s, before[s].handler, before[s].flags,
		       before[s].restorer, before[s].mask);
	}

	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGPIPE);
	sigaddset(&blk, SIGRTMIN + 7);
	sigprocmask(SIG_BLOCK, &blk, NULL);

	/* Long enough never to fire during a test. */
	struct itimerval it = { { 1000, 0 }, { 10000, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct itimerval iv = { { 500, 0 }, { 5000, 0 } };
	setitimer(ITIMER_VIRTUAL, &iv, NULL);

	static char altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	printf("altstack_sp %p\naltstack_size %zu\n", (void *)altstack, sizeof(altstack));

	umask(027);
	gid_t groups[] = { 1, 2, 3 };
	setgroups(3, groups);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);

	/* Its own executable, read-only, at fd 42, positioned. */
	int fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0 || dup2(fd, 42) != 42)
		return 2;
	close(fd);
	if (lseek(42, 1234, SEEK_SET) != 1234)
		return 2;
	printf("fd 42\npos 1234\n");

	/* Memory: anonymous, heap, a private file mapping with every other
	 * page written, PROT_NONE, and the stack. */
	unsigned char *anon = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(anon, REGION, 1);
	unsigned char *heap = malloc(HEAP);
	fill(heap, HEAP, 6);
	int mf = open("mapped", O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char *fbuf = malloc(REGION);
	fill(fbuf, REGION, 2);
	if (mf < 0 || write(mf, fbuf, REGION) != REGION)
		return 2;
	free(fbuf);
	unsigned char *fmap = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
	close(mf);
	for (int pg = 0; pg < REGION / 4096; pg += 2)
		fill(fmap + pg * 4096, 4096, 3 + pg);
	/* Read the others, so that they are present as file pages. */
	volatile unsigned char sink = 0;
	for (int pg = 1; pg < REGION / 4096; pg += 2)
		sink ^= fmap[pg * 4096];
	(void)sink;
	unsigned char *none = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(none, REGION, 4);
	mprotect(none, REGION, PROT_NONE);
	unsigned char stackbuf[16384] __attribute__((aligned(4096)));
	fill(stackbuf, sizeof(stackbuf), 5);
	printf("anon %p\nheap %p\nheap_len %d\nfmap %p\nnone %p\nstack %p\nregion %d\n",
	       (void *)anon, (void *)heap, HEAP, (void *)fmap, (void *)none, (void *)stackbuf,
	       REGION);

	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	/* SIGUSR1 stays blocked but in sigsuspend: one that comes before the
	 * wait (right after a restore, say) waits for it, it is not lost. */
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);
	sigprocmask(SIG_SETMASK, &waitmask, NULL);

	sigset_t now;
	sigprocmask(SIG_BLOCK, NULL, &now);
	if (!sigismember(&now, SIGPIPE) || !sigismember(&now, SIGRTMIN + 7) ||
	    sigismember(&now, SIGUSR1))
		return verdict(argv[1], "FAIL: the signal mask changed\n");
	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		struct ksigaction k = kact(s);
		if (memcmp(&k, &before[s], sizeof(k))) {
			char msg[64];
			snprintf(msg, sizeof(msg), "FAIL: the action of signal %d changed\n", s);
			return verdict(argv[1], msg);
		}
	}
	struct itimerval cur;
	getitimer(ITIMER_REAL, &cur);
	if (cur.it_interval.tv_sec != 1000 || cur.it_value.tv_sec == 0 || cur.it_value.tv_sec > 10000)
		return verdict(argv[1], "FAIL: the real interval timer changed\n");
	stack_t ss2;
	sigaltstack(NULL, &ss2);
	if (ss2.ss_sp != altstack || ss2.ss_size != sizeof(altstack))
		return verdict(argv[1], "FAIL: the alternate stack changed\n");
	if (lseek(42, 0, SEEK_CUR) != 1234)
		return verdict(argv[1], "FAIL: fd 42 moved\n");
	if (umask(027) != 027)
		return verdict(argv[1], "FAIL: the umask changed\n");
	if (!check(anon, REGION, 1))
		return verdict(argv[1], "FAIL: anonymous memory changed\n");
	if (!check(heap, HEAP, 6))
		return verdict(argv[1], "FAIL: heap memory changed\n");
	for (int pg = 0; pg < REGION / 4096; pg++) {
		unsigned char exp[4096];
		if (pg % 2 == 0)
			fill(exp, 4096, 3 + pg);
		else
			for (int i = 0; i < 4096; i++)
				exp[i] = pattern(pg * 4096 + i, 2);
		if (memcmp(fmap + pg * 4096, exp, 4096))
			return verdict(argv[1], "FAIL: file-private memory changed\n");
	}
	mprotect(none, REGION, PROT_READ);
	if (!check(none, REGION, 4))
		return verdict(argv[1], "FAIL: PROT_NONE memory changed\n");
	if (!check(stackbuf, sizeof(stackbuf), 5))
		return verdict(argv[1], "FAIL: stack memory changed\n");
	return verdict(argv[1], "PASS\n");
}
