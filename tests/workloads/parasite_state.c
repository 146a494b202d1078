// build: -lrt
/*
 * parasite_state: sets up the state the parasite reads (signal actions,
 * timers, the alternate stack, TLS, rseq, credentials, an fd, and memory
 * of several kinds with known contents), prints what it set as "key value"
 * lines before "ready", and on SIGUSR1 checks that its memory and its
 * signal mask are still as they were.
 *
 *   parasite_state OUTFILE
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
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REGION (64 * 4096)

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

static void print_kact(int sig)
{
	struct ksigaction k;
	syscall(SYS_rt_sigaction, sig, NULL, &k, 8);
	printf("sig%d %#lx,%#lx,%#lx,%#lx\n", sig, k.handler, k.flags, k.restorer, k.mask);
}

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

	for (int s = 1; s <= 64; s++)
		if (s != SIGKILL && s != SIGSTOP && s != 32 && s != 33)
			print_kact(s);

	/* A blocked mask to find again. */
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGPIPE);
	sigaddset(&blk, SIGRTMIN + 7);
	sigprocmask(SIG_BLOCK, &blk, NULL);

	struct itimerval it = { { 10, 0 }, { 100, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct itimerval iv = { { 5, 0 }, { 50, 0 } };
	setitimer(ITIMER_VIRTUAL, &iv, NULL);
	struct itimerval ip = { { 3, 0 }, { 30, 0 } };
	setitimer(ITIMER_PROF, &ip, NULL);

	timer_t t1, t2;
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGUSR2;
	timer_create(CLOCK_MONOTONIC, &sev, &t1);
	struct itimerspec ts1 = { { 7, 0 }, { 70, 0 } };
	timer_settime(t1, 0, &ts1, NULL);
	timer_create(CLOCK_REALTIME, &sev, &t2);
	struct itimerspec ts2 = { { 0, 500000000 }, { 40, 0 } };
	timer_settime(t2, 0, &ts2, NULL);
	printf("timer1 %d\ntimer2 %d\n", (int)(intptr_t)t1, (int)(intptr_t)t2);

	static char altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	printf("altstack_sp %p\naltstack_size %zu\n", (void *)altstack, sizeof(altstack));

	printf("fs_base %p\n", __builtin_thread_pointer());
	if (__rseq_size > 0)
		printf("rseq %p\n", (char *)__builtin_thread_pointer() + __rseq_offset);
	else
		printf("rseq 0\n");

	umask(027);
	gid_t groups[] = { 1, 2, 3 };
	setgroups(3, groups);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);

	int fd = open("fdcheck", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "parasite sends me back", 22) != 22)
		return 2;
	int fdn = dup2(fd, 42);
	close(fd);
	printf("fd %d\n", fdn);

	/* Memory: anonymous, private file (some pages written), PROT_NONE,
	 * and the stack. */
	unsigned char *anon = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(anon, REGION, 1);
	int mf = open("mapped", O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char *fbuf = malloc(REGION);
	fill(fbuf, REGION, 2);
	if (write(mf, fbuf, REGION) != REGION)
		return 2;
	unsigned char *fmap = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
	close(mf);
	/* Copy-on-write every other page with new contents. */
	for (int pg = 0; pg < REGION / 4096; pg += 2)
		fill(fmap + pg * 4096, 4096, 3 + pg);
	unsigned char *none = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(none, REGION, 4);
	mprotect(none, REGION, PROT_NONE);
	unsigned char stackbuf[16384] __attribute__((aligned(4096)));
	fill(stackbuf, sizeof(stackbuf), 5);
	printf("anon %p\nfmap %p\nnone %p\nstack %p\nregion %d\n", (void *)anon, (void *)fmap,
	       (void *)none, (void *)stackbuf, REGION);

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
	if (!check(anon, REGION, 1))
		return verdict(argv[1], "FAIL: anonymous memory changed\n");
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
