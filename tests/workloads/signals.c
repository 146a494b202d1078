/*
 * signals: signal handlers of every combination of SA_SIGINFO,
 * SA_RESTART, SA_ONSTACK, SA_NODEFER and SA_RESETHAND, with masks and
 * glibc's SA_RESTORER, each invoked after the dump and checking what it
 * sees; and a main thread that is inside an SA_ONSTACK handler, on its
 * alternate stack, while it is dumped.
 *
 *   signals OUTFILE
 *
 * Combination c (0-31: bit 0 SA_SIGINFO, 1 SA_RESTART, 2 SA_ONSTACK,
 * 3 SA_NODEFER, 4 SA_RESETHAND) is the action of signal sig_of(c)
 * (SIGUSR2, then SIGRTMIN..SIGRTMIN+30). Prints each kernel sigaction
 * ("sigN handler,flags,restorer,mask"), raises SIGURG, whose SA_ONSTACK
 * handler prints "ready" and waits in sigsuspend. On SIGUSR1 the handler
 * checks it is still on the alternate stack (sigaltstack says SS_ONSTACK,
 * its locals lie in it) and returns; the main code then checks it came
 * back to the right place, compares every kernel sigaction with the one
 * printed, raises each combination's signal and checks what its handler
 * saw (the siginfo, the stack, the mask) and, for SA_RESETHAND, that the
 * action is back to SIG_DFL. PASS or the first failure goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NCOMB 32
#define ALTSZ 65536

struct ksigaction {
	unsigned long handler, flags, restorer, mask;
};

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char altstack[ALTSZ] __attribute__((aligned(16)));
static const char *outfile;

static int sig_of(int c) { return c == 0 ? SIGUSR2 : SIGRTMIN + c - 1; }
static int comb_of(int sig)
{
	for (int c = 0; c < NCOMB; c++)
		if (sig_of(c) == sig)
			return c;
	return -1;
}

static int flags_of(int c)
{
	int f = 0;
	if (c & 1)
		f |= SA_SIGINFO;
	if (c & 2)
		f |= SA_RESTART;
	if (c & 4)
		f |= SA_ONSTACK;
	if (c & 8)
		f |= SA_NODEFER;
	if (c & 16)
		f |= SA_RESETHAND;
	return f;
}

static void mask_of(int c, sigset_t *m)
{
	sigemptyset(m);
	if (c & 1)
		sigaddset(m, SIGHUP);
	if (c % 3 == 0)
		sigaddset(m, SIGWINCH);
	if (c % 5 == 0)
		sigaddset(m, SIGTTIN);
	sigaddset(m, sig_of((c + 7) % NCOMB));
}

/* What each handler saw. */
struct seen {
	int calls;
	int sig;
	int has_info;
	int i_signo, i_code, i_pid;
	uintptr_t local;
	int ss_flags;
	uint64_t mask;
} seen[NCOMB];

static uint64_t raw_mask(void)
{
	uint64_t m = 0;
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
	return m;
}

static void record(int sig, siginfo_t *si)
{
	volatile char here = 0;
	int c = comb_of(sig);
	if (c < 0)
		return;
	struct seen *s = &seen[c];
	s->calls++;
	s->sig = sig;
	s->has_info = si != NULL;
	if (si) {
		s->i_signo = si->si_signo;
		s->i_code = si->si_code;
		s->i_pid = si->si_pid;
	}
	s->local = (uintptr_t)&here;
	stack_t ss;
	sigaltstack(NULL, &ss);
	s->ss_flags = ss.ss_flags;
	s->mask = raw_mask();
}

static void h_plain(int sig) { record(sig, NULL); }
static void h_info(int sig, siginfo_t *si, void *uc) { (void)uc; record(sig, si); }

static int verdict(const char *msg)
{
	int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
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
static int in_alt(uintptr_t p) { return p >= (uintptr_t)altstack && p < (uintptr_t)altstack + ALTSZ; }

/* The SIGURG handler: the main thread sits in it, on the alternate
 * stack, while it is dumped. */
static char urg_fail[160];
static volatile int urg_returned;

static void on_urg(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	volatile uint64_t canary[8];
	for (int i = 0; i < 8; i++)
		canary[i] = 0x5157ac0000000000ull + i;
	if (si->si_code != SI_TKILL || si->si_pid != getpid()) {
		snprintf(urg_fail, sizeof(urg_fail), "SIGURG siginfo code %d pid %d", si->si_code,
			 si->si_pid);
		return;
	}
	stack_t ss;
	sigaltstack(NULL, &ss);
	printf("urg_ss_flags %d\nurg_local %p\n", ss.ss_flags, (void *)canary);
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigset_t waitmask;
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	sigaltstack(NULL, &ss);
	if (!(ss.ss_flags & SS_ONSTACK))
		snprintf(urg_fail, sizeof(urg_fail), "in the SIGURG handler, sigaltstack flags %d",
			 ss.ss_flags);
	else if (ss.ss_sp != altstack || ss.ss_size != ALTSZ)
		snprintf(urg_fail, sizeof(urg_fail), "in the SIGURG handler, sigaltstack %p %zu",
			 ss.ss_sp, ss.ss_size);
	else if (!in_alt((uintptr_t)canary))
		snprintf(urg_fail, sizeof(urg_fail), "the SIGURG handler's locals are off the alternate stack");
	for (int i = 0; i < 8; i++)
		if (canary[i] != 0x5157ac0000000000ull + i)
			snprintf(urg_fail, sizeof(urg_fail), "the SIGURG handler's locals changed");
	urg_returned = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	outfile = argv[1];

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	for (int c = 0; c < NCOMB; c++) {
		memset(&sa, 0, sizeof(sa));
		if (c & 1)
			sa.sa_sigaction = h_info;
		else
			sa.sa_handler = h_plain;
		sa.sa_flags = flags_of(c);
		mask_of(c, &sa.sa_mask);
		if (sigaction(sig_of(c), &sa, NULL))
			return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_urg;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaddset(&sa.sa_mask, SIGQUIT);
	sigaction(SIGURG, &sa, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSZ, .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	printf("altstack %p\naltstack_size %d\n", (void *)altstack, ALTSZ);
	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		before[s] = kact(s);
		printf("sig%d %#lx,%#lx,%#lx,%#lx\n", s, before[s].handler, before[s].flags,
		       before[s].restorer, before[s].mask);
	}

	volatile uint64_t canary[8];
	for (int i = 0; i < 8; i++)
		canary[i] = 0xca4a000000000000ull + i;
	/* Prints "ready" and waits from inside the handler. */
	raise(SIGURG);
	if (!urg_returned)
		return verdict("FAIL: came back from the SIGURG handler without its check\n");
	char msg[256];
	if (urg_fail[0]) {
		snprintf(msg, sizeof(msg), "FAIL: %s\n", urg_fail);
		return verdict(msg);
	}
	for (int i = 0; i < 8; i++)
		if (canary[i] != 0xca4a000000000000ull + i)
			return verdict("FAIL: the interrupted code's locals changed\n");
	sigaltstack(NULL, &ss);
	if (ss.ss_flags != 0 || ss.ss_sp != altstack || ss.ss_size != ALTSZ) {
		snprintf(msg, sizeof(msg), "FAIL: after the SIGURG handler, sigaltstack %p %zu %d\n",
			 ss.ss_sp, ss.ss_size, ss.ss_flags);
		return verdict(msg);
	}

	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		struct ksigaction k = kact(s);
		if (memcmp(&k, &before[s], sizeof(k))) {
			snprintf(msg, sizeof(msg), "FAIL: the action of signal %d changed\n", s);
			return verdict(msg);
		}
	}

	for (int c = 0; c < NCOMB; c++) {
		int sig = sig_of(c);
		uint64_t m0 = raw_mask();
		raise(sig);
		struct seen *s = &seen[c];
		if (s->calls != 1) {
			snprintf(msg, sizeof(msg), "FAIL: signal %d's handler ran %d times\n", sig, s->calls);
			return verdict(msg);
		}
		if ((c & 1) && (!s->has_info || s->i_signo != sig || s->i_code != SI_TKILL ||
				s->i_pid != getpid())) {
			snprintf(msg, sizeof(msg), "FAIL: signal %d's siginfo: signo %d code %d pid %d\n",
				 sig, s->i_signo, s->i_code, s->i_pid);
			return verdict(msg);
		}
		int onstack = in_alt(s->local);
		if (onstack != !!(c & 4) || !!(s->ss_flags & SS_ONSTACK) != !!(c & 4)) {
			snprintf(msg, sizeof(msg), "FAIL: signal %d's handler ran %s the alternate stack (flags %d)\n",
				 sig, onstack ? "on" : "off", s->ss_flags);
			return verdict(msg);
		}
		sigset_t sm;
		mask_of(c, &sm);
		uint64_t want = m0;
		for (int k = 1; k < 65; k++)
			if (sigismember(&sm, k))
				want |= 1ull << (k - 1);
		if (!(c & 8))
			want |= 1ull << (sig - 1);
		if (s->mask != want) {
			snprintf(msg, sizeof(msg), "FAIL: signal %d's handler ran with mask %#llx, want %#llx\n",
				 sig, (unsigned long long)s->mask, (unsigned long long)want);
			return verdict(msg);
		}
		if (raw_mask() != m0)
			return verdict("FAIL: the mask after a handler is not the one before\n");
		struct ksigaction k = kact(sig);
		if (c & 16) {
			if (k.handler != (unsigned long)SIG_DFL) {
				snprintf(msg, sizeof(msg), "FAIL: signal %d's SA_RESETHAND action stayed\n", sig);
				return verdict(msg);
			}
		} else if (memcmp(&k, &before[sig], sizeof(k))) {
			snprintf(msg, sizeof(msg), "FAIL: signal %d's action changed by its delivery\n", sig);
			return verdict(msg);
		}
	}
	return verdict("PASS\n");
}
