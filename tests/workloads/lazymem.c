// build: -pthread
/*
 * lazymem: MIB of anonymous memory holding a known pattern, answering
 * one-byte commands on two fifos it makes in its directory ("in", "out"),
 * for lazy restore: the test times the first answer after a restore and
 * has the process check its memory itself.
 *
 *   lazymem OUTFILE MIB NCHILD [NTHREAD]
 *
 * With NCHILD, that many children are forked first, each rewriting its
 * own stripe of the area (so that every process holds pages of its own)
 * and waiting on a pipe from the parent. With NTHREAD, that many
 * threads are started too, each waiting on a pipe of its own: 'c' has
 * each of them check the area as well (their faults, not the main
 * thread's, bring those pages in first). Prints "addr", "len" and
 * "ready". Commands (the answer is one byte on "out"):
 *   'p'  answers 'p', touching no page of the area
 *   'c'  checks the area, and has each child check its own: 'P' when
 *        every word is right, 'F' otherwise (and PASS or FAIL in OUTFILE)
 *   'f'  forks a child that checks the area at once and ends: 'P' or 'F'
 *        by its exit status
 *   'd'  drops the area's first MiB (MADV_DONTNEED): it reads as zeros
 *        from then on; answers 'd'
 *   'k'  forks a child that waits until this process ends (its pipe
 *        from it closes), then checks the area and exits 0 when every
 *        word is right, 1 otherwise; answers 'k'
 *   'x'  ends the children, then itself
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILD 8
#define STRIPE_WORDS 512

static uint64_t *area;
static size_t words;
static size_t dropped_words;
static int nchild;

static uint64_t expected(size_t i, int me)
{
	if (i < dropped_words)
		return 0;
	uint64_t v = i * 0x9e3779b97f4a7c15ull;
	int owner = (int)((i / STRIPE_WORDS) % (size_t)(nchild + 1));
	if (me > 0 && owner == me)
		v ^= (uint64_t)me * 0x123456789ull;
	return v;
}

static int check(int me)
{
	for (size_t i = 0; i < words; i++)
		if (area[i] != expected(i, me))
			return 0;
	return 1;
}

static void verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			_exit(2);
		close(fd);
	}
}

#define MAX_THREAD 8
static int to_thread[MAX_THREAD], from_thread[MAX_THREAD];

static void *thread_loop(void *arg)
{
	int k = (int)(intptr_t)arg;
	int rd = to_thread[k], wr = from_thread[k];
	for (;;) {
		char c;
		if (read(rd, &c, 1) != 1)
			return NULL;
		char a = check(0) ? 'P' : 'F';
		if (write(wr, &a, 1) != 1)
			return NULL;
	}
}

static void child_loop(int me, int rd, int wr)
{
	for (;;) {
		char c;
		if (read(rd, &c, 1) != 1 || c == 'x')
			_exit(0);
		char a = check(me) ? 'P' : 'F';
		if (write(wr, &a, 1) != 1)
			_exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	size_t len = (size_t)atol(argv[2]) << 20;
	nchild = atoi(argv[3]);
	int nthread = argc > 4 ? atoi(argv[4]) : 0;
	if (len == 0 || nchild < 0 || nchild > MAX_CHILD || nthread < 0 || nthread > MAX_THREAD)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	words = len / 8;
	area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < words; i++)
		area[i] = expected(i, 0);
	int to_child[MAX_CHILD], from_child[MAX_CHILD];
	for (int k = 0; k < nchild; k++) {
		int a[2], b[2];
		if (pipe(a) || pipe(b))
			return 2;
		pid_t pid = fork();
		if (pid < 0)
			return 2;
		if (pid == 0) {
			close(a[1]);
			close(b[0]);
			int me = k + 1;
			for (size_t i = 0; i < words; i++)
				if ((int)((i / STRIPE_WORDS) % (size_t)(nchild + 1)) == me)
					area[i] ^= (uint64_t)me * 0x123456789ull;
			child_loop(me, a[0], b[1]);
		}
		close(a[0]);
		close(b[1]);
		to_child[k] = a[1];
		from_child[k] = b[0];
	}
	int thread_to[MAX_THREAD], thread_from[MAX_THREAD];
	for (int k = 0; k < nthread; k++) {
		int a[2], b[2];
		pthread_t t;
		if (pipe(a) || pipe(b))
			return 2;
		to_thread[k] = a[0];
		from_thread[k] = b[1];
		thread_to[k] = a[1];
		thread_from[k] = b[0];
		if (pthread_create(&t, NULL, thread_loop, (void *)(intptr_t)k))
			return 2;
	}
	if (mkfifo("in", 0600) || mkfifo("out", 0600))
		return 2;
	int in = open("in", O_RDWR);
	int out = open("out", O_RDWR);
	if (in < 0 || out < 0)
		return 2;
	printf("addr %p\nlen %zu\nready\n", (void *)area, len);
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	for (;;) {
		char c, a;
		ssize_t n = read(in, &c, 1);
		if (n != 1)
			return 2;
		switch (c) {
		case 'p':
			a = 'p';
			break;
		case 'c': {
			int ok = check(0);
			for (int k = 0; k < nchild; k++) {
				char r = 0;
				if (write(to_child[k], "c", 1) != 1 || read(from_child[k], &r, 1) != 1 ||
				    r != 'P')
					ok = 0;
			}
			for (int k = 0; k < nthread; k++) {
				char r = 0;
				if (write(thread_to[k], "c", 1) != 1 || read(thread_from[k], &r, 1) != 1 ||
				    r != 'P')
					ok = 0;
			}
			verdict(argv[1], ok ? "PASS\n" : "FAIL: memory changed\n");
			a = ok ? 'P' : 'F';
			break;
		}
		case 'f': {
			pid_t pid = fork();
			if (pid < 0)
				return 2;
			if (pid == 0)
				_exit(check(0) ? 0 : 1);
			int st = 0;
			waitpid(pid, &st, 0);
			a = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 'P' : 'F';
			break;
		}
		case 'k': {
			int w[2];
			if (pipe(w))
				return 2;
			pid_t pid = fork();
			if (pid < 0)
				return 2;
			if (pid == 0) {
				char x;
				close(w[1]);
				while (read(w[0], &x, 1) > 0)
					;
				_exit(check(0) ? 0 : 1);
			}
			close(w[0]);
			a = 'k';
			break;
		}
		case 'd':
			if (madvise(area, 1 << 20, MADV_DONTNEED))
				return 2;
			dropped_words = (1 << 20) / 8;
			a = 'd';
			break;
		case 'x':
			for (int k = 0; k < nchild; k++) {
				if (write(to_child[k], "x", 1) != 1)
					return 2;
				waitpid(-1, NULL, 0);
			}
			return 0;
		default:
			a = '?';
		}
		if (write(out, &a, 1) != 1)
			return 2;
	}
}
