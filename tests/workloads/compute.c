// build: -static
/*
 * compute: a computation whose state lives in registers, general and SSE,
 * and that must come out right whatever is done to the process meanwhile
 * (infection and cure, dump and restore).
 *
 *   compute OUTFILE MODE [seccomp]
 *
 * MODE: "spin"  steps as fast as it can;
 *       "sleep" sleeps 1 ms between steps (clock_nanosleep: a restart
 *               block when interrupted);
 *       "read"  blocks in read(2) on an empty pipe (ERESTARTSYS when
 *               interrupted), which must not return before SIGUSR1.
 * With "seccomp", a filter that kills the process on mmap(2) and socket(2)
 * is installed before the loop: the parasite must get through it.
 * On SIGUSR1 it recomputes its state from scratch for the same number of
 * steps, compares, writes PASS or FAIL to OUTFILE and exits 0 or 1.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

/* In "read" mode, the pipe the read waits on: the handler writes to it,
 * so that a SIGUSR1 that comes just before the read (right after a
 * restore, say) still ends it. */
static int wake_fd = -1;

static void on_usr1(int sig)
{
	(void)sig;
	stop = 1;
	if (wake_fd >= 0 && write(wake_fd, "x", 1) < 0)
		stop = 2;
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

static int kill_on_mmap_and_socket(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
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
	const char *mode = argv[2];
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: read returns EINTR */

	int p[2] = { -1, -1 };
	if (strcmp(mode, "read") == 0) {
		if (pipe(p) < 0)
			return 2;
		wake_fd = p[1];
	}

	/* The filter goes in before "ready", so that the test sees it; the
	 * readiness line is written with write(2), which maps nothing. */
	if (argc > 3 && strcmp(argv[3], "seccomp") == 0 && kill_on_mmap_and_socket())
		return 2;
	if (write(1, "ready\n", 6) != 6)
		return 2;
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	/* Registers hold the state in the loop: the compiler keeps it there. */
	register uint64_t a = 1, b = 2, c = 3, d = 4;
	register double x = 0.25;
	uint64_t n = 0;
	char buf[1];
	char msg[128];
	while (!stop) {
		struct state s = { a, b, c, d, x };
		step(&s);
		a = s.a, b = s.b, c = s.c, d = s.d, x = s.x;
		n++;
		if (mode[0] == 's' && mode[1] == 'l') {
			struct timespec ts = { 0, 1000000 };
			int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
			if (r != 0 && !stop) {
				snprintf(msg, sizeof(msg), "FAIL: clock_nanosleep returned %d\n", r);
				return verdict(argv[1], msg);
			}
		} else if (mode[0] == 'r') {
			ssize_t r = read(p[0], buf, 1);
			if ((r != -1 || errno != EINTR) && !stop) {
				snprintf(msg, sizeof(msg), "FAIL: read returned %zd errno %d\n", r, errno);
				return verdict(argv[1], msg);
			}
		}
	}

	struct state e = { 1, 2, 3, 4, 0.25 };
	for (uint64_t i = 0; i < n; i++)
		step(&e);
	if (e.a != a || e.b != b || e.c != c || e.d != d || e.x != x) {
		snprintf(msg, sizeof(msg), "FAIL: state differs after %llu steps\n",
			 (unsigned long long)n);
		return verdict(argv[1], msg);
	}
	return verdict(argv[1], "PASS\n");
}
