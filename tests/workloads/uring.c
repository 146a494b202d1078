/*
 * uring: a process with an io_uring instance (raw syscalls, no liburing),
 * idle when it is dumped:
 *
 *   fd 10      the file "data" (64 KiB of a known pattern), read-only
 *   fd 20      the ring: 8 SQ entries, 32 CQ entries (CQSIZE), its ring
 *              region mapped twice (at IORING_OFF_SQ_RING and _CQ_RING)
 *              and its SQEs once; registered files {empty, fd 10},
 *              registered buffers {BUF_A, BUF_B} (page-aligned, 8 KiB
 *              and 4 KiB of an anonymous mapping)
 *
 * Before the dump, ROUNDS reads go through it (plain reads of fd 10 and
 * fixed reads into the registered buffers through the registered file),
 * so that its counters are well away from zero and off the ring's size.
 *
 *   uring OUTFILE [MODE]
 *
 * MODE: "" (as above), "big" (128-byte SQEs and 32-byte CQEs), "noarray"
 * (no SQ array, 64 entries), "disabled" (the ring is made disabled and
 * stays so until the check enables it; no reads before), "inflight" (a
 * read of an empty pipe, fds 12/13, is in flight: the dump must refuse
 * it; the check writes the pipe and reaps it), "sqpoll" (a submission
 * thread: refused), "single" (SINGLE_ISSUER), "defer" (SINGLE_ISSUER and
 * DEFER_TASKRUN), "single_mt" (SINGLE_ISSUER in a process with a second
 * thread: refused), "far" (50000
 * rounds before the dump: the counters at 100074), "noring" (no ring at
 * all, the same process otherwise: the benches' baseline).
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * the counters in the ring's memory and in fdinfo are what they were;
 * a fixed read (registered file 1 into registered buffer 1 at an offset)
 * and a plain read complete with the right bytes, and no other
 * completion comes; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_REGISTER_ENABLE_RINGS
#define IORING_REGISTER_ENABLE_RINGS 12
#endif

#define DATA_LEN (64 * 1024)
#define ROUNDS 37
#define RING_FD 20

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static int verdict(const char *path, const char *m)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, m, strlen(m)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(m, "PASS\n") == 0 ? 0 : 1;
}

static unsigned char pattern(size_t off) { return (unsigned char)(off * 7 + (off >> 9)); }

struct ring {
	unsigned flags, sq_entries, cq_entries;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	char *cqes, *sqes;
	void *sq_ring, *cq_ring;
};

static struct ring r;
static char *bufs;             /* 12 KiB: BUF_A (8 KiB) then BUF_B (4 KiB) */
static char plain_buf[4096];
static char msg[512];
static unsigned before_sq, before_cq;
static char before_info[4096];

static int setup_ring(unsigned entries, unsigned flags)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = flags | IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	int fd = syscall(__NR_io_uring_setup, entries, &p);
	if (fd < 0)
		return -1;
	if (dup2(fd, RING_FD) != RING_FD)
		return -1;
	close(fd);
	r.flags = p.flags;
	r.sq_entries = p.sq_entries;
	r.cq_entries = p.cq_entries;
	size_t cqe = (flags & IORING_SETUP_CQE32) ? 32 : 16;
	size_t sqe = (flags & IORING_SETUP_SQE128) ? 128 : 64;
	size_t cq_len = p.cq_off.cqes + p.cq_entries * cqe;
	size_t sq_len = (flags & IORING_SETUP_NO_SQARRAY) ? cq_len : p.sq_off.array + p.sq_entries * 4;
	r.sq_ring = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, RING_FD,
			 IORING_OFF_SQ_RING);
	r.cq_ring = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, RING_FD,
			 IORING_OFF_CQ_RING);
	r.sqes = mmap(NULL, p.sq_entries * sqe, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		      RING_FD, IORING_OFF_SQES);
	if (r.sq_ring == MAP_FAILED || r.cq_ring == MAP_FAILED || r.sqes == MAP_FAILED)
		return -1;
	char *s = r.sq_ring, *c = r.cq_ring;
	r.sq_head = (unsigned *)(s + p.sq_off.head);
	r.sq_tail = (unsigned *)(s + p.sq_off.tail);
	r.sq_mask = (unsigned *)(s + p.sq_off.ring_mask);
	r.sq_array = (flags & IORING_SETUP_NO_SQARRAY) ? NULL : (unsigned *)(s + p.sq_off.array);
	r.cq_head = (unsigned *)(c + p.cq_off.head);
	r.cq_tail = (unsigned *)(c + p.cq_off.tail);
	r.cq_mask = (unsigned *)(c + p.cq_off.ring_mask);
	r.cqes = c + p.cq_off.cqes;
	/* An identity SQ array, written once (as liburing does). */
	if (r.sq_array)
		for (unsigned i = 0; i < r.sq_entries; i++)
			r.sq_array[i] = i;
	return 0;
}

/* Queues one SQE (without entering). */
static struct io_uring_sqe *queue(void)
{
	unsigned tail = *r.sq_tail;
	unsigned idx = tail & *r.sq_mask;
	unsigned shift = (r.flags & IORING_SETUP_SQE128) ? 1 : 0;
	struct io_uring_sqe *sqe = (struct io_uring_sqe *)r.sqes + (idx << shift);
	memset(sqe, 0, sizeof(*sqe) << shift);
	__atomic_store_n(r.sq_tail, tail + 1, __ATOMIC_RELEASE);
	return sqe;
}

static int enter(unsigned submit, unsigned wait)
{
	return syscall(__NR_io_uring_enter, RING_FD, submit, wait,
		       (wait ? IORING_ENTER_GETEVENTS : 0) | IORING_ENTER_SQ_WAKEUP, NULL, 0);
}

/* Reaps one CQE: its user_data and res; -1 when none is there. */
static int reap(uint64_t *data, int *res)
{
	unsigned head = *r.cq_head;
	if (head == __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE))
		return -1;
	unsigned shift = (r.flags & IORING_SETUP_CQE32) ? 1 : 0;
	struct io_uring_cqe *cqe = (struct io_uring_cqe *)r.cqes + ((head & *r.cq_mask) << shift);
	*data = cqe->user_data;
	*res = cqe->res;
	__atomic_store_n(r.cq_head, head + 1, __ATOMIC_RELEASE);
	return 0;
}

static void prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned len, uint64_t off,
		      uint64_t data)
{
	sqe->opcode = IORING_OP_READ;
	sqe->fd = fd;
	sqe->addr = (uintptr_t)buf;
	sqe->len = len;
	sqe->off = off;
	sqe->user_data = data;
}

static void prep_fixed(struct io_uring_sqe *sqe, int index, void *buf, unsigned len, uint64_t off,
		       unsigned buf_index, uint64_t data)
{
	sqe->opcode = IORING_OP_READ_FIXED;
	sqe->fd = index;
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->addr = (uintptr_t)buf;
	sqe->len = len;
	sqe->off = off;
	sqe->buf_index = buf_index;
	sqe->user_data = data;
}

static const char *bytes_ok(const char *buf, unsigned len, uint64_t off, const char *what)
{
	for (unsigned i = 0; i < len; i++)
		if ((unsigned char)buf[i] != pattern(off + i)) {
			snprintf(msg, sizeof(msg), "FAIL: %s: byte %u is %#x\n", what, i,
				 (unsigned char)buf[i]);
			return msg;
		}
	return NULL;
}

/* One round: a plain read and a fixed read, both reaped and checked. */
static const char *round_trip(unsigned n)
{
	uint64_t off_a = (n * 4096u + 100) % (DATA_LEN - 4096);
	uint64_t off_b = (n * 1000u + 7) % (DATA_LEN - 4096);
	prep_read(queue(), 10, plain_buf, 1000, off_a, 1000 + n);
	prep_fixed(queue(), 1, bufs + 8192 + 96, 3000, off_b, 1, 2000 + n);
	int got = enter(2, 2);
	if (got != 2) {
		snprintf(msg, sizeof(msg), "FAIL: round %u: enter gives %d (errno %d)\n", n, got,
			 errno);
		return msg;
	}
	for (int i = 0; i < 2; i++) {
		uint64_t data;
		int res;
		if (reap(&data, &res)) {
			snprintf(msg, sizeof(msg), "FAIL: round %u: completion %d missing\n", n, i);
			return msg;
		}
		int want = data == 1000 + n ? 1000 : 3000;
		if ((data != 1000 + n && data != 2000 + n) || res != want) {
			snprintf(msg, sizeof(msg),
				 "FAIL: round %u: completion of %llu gives %d, not %d\n", n,
				 (unsigned long long)data, res, want);
			return msg;
		}
	}
	uint64_t data;
	int res;
	if (!reap(&data, &res)) {
		snprintf(msg, sizeof(msg), "FAIL: round %u: an extra completion (%llu, %d)\n", n,
			 (unsigned long long)data, res);
		return msg;
	}
	const char *why = bytes_ok(plain_buf, 1000, off_a, "plain read");
	if (!why)
		why = bytes_ok(bufs + 8192 + 96, 3000, off_b, "fixed read");
	return why;
}

static int fdinfo(char *out, size_t len)
{
	int fd = open("/proc/self/fdinfo/20", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	out[n] = 0;
	/* From SqMask on (pos, flags, mnt_id and ino are the file's). */
	char *from = strstr(out, "SqMask");
	if (!from)
		return -1;
	memmove(out, from, strlen(from) + 1);
	/* Without the SQPOLL thread's CPU and times, which move. */
	char *cpu = strstr(out, "SqThreadCpu:"), *files = strstr(out, "UserFiles:");
	if (cpu && files && cpu < files)
		memmove(cpu, files, strlen(files) + 1);
	return 0;
}

static int inflight_pipe[2];

static void *idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static const char *check(const char *mode)
{
	if (!strcmp(mode, "noring"))
		return NULL;
	if (*r.sq_head != before_sq || *r.sq_tail != before_sq || *r.cq_head != before_cq ||
	    *r.cq_tail != before_cq) {
		snprintf(msg, sizeof(msg),
			 "FAIL: ring memory: SQ %u/%u, CQ %u/%u, not %u and %u\n", *r.sq_head,
			 *r.sq_tail, *r.cq_head, *r.cq_tail, before_sq, before_cq);
		return msg;
	}
	char now[4096];
	if (fdinfo(now, sizeof(now)))
		return "FAIL: reading fdinfo\n";
	if (strcmp(now, before_info)) {
		/* The first line that differs. */
		const char *a = before_info, *b = now;
		while (*a && *a == *b) {
			const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
			if (!ea || !eb || ea - a != eb - b || strncmp(a, b, ea - a))
				break;
			a = ea + 1;
			b = eb + 1;
		}
		snprintf(msg, sizeof(msg), "FAIL: fdinfo line %.*s now %.*s\n",
			 (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
		return msg;
	}
	if (!strcmp(mode, "inflight")) {
		char b = 'x';
		if (write(inflight_pipe[1], &b, 1) != 1)
			return "FAIL: writing the pipe\n";
		int got = enter(0, 1);
		uint64_t data;
		int res;
		if (got < 0 || reap(&data, &res) || data != 77 || res != 1 || plain_buf[0] != 'x')
			return "FAIL: the read in flight did not complete\n";
		return NULL;
	}
	if (!strcmp(mode, "disabled") &&
	    syscall(__NR_io_uring_register, RING_FD, IORING_REGISTER_ENABLE_RINGS, NULL, 0))
		return "FAIL: enabling the ring\n";
	const char *why = round_trip(before_sq / 2);
	if (!why)
		why = round_trip(before_sq / 2 + 1);
	return why;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *mode = argc > 2 ? argv[2] : "";
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigfillset(&block);
	sigprocmask(SIG_BLOCK, &block, NULL);

	static unsigned char data[DATA_LEN];
	for (size_t i = 0; i < DATA_LEN; i++)
		data[i] = pattern(i);
	int d = open("data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (d < 0 || write(d, data, DATA_LEN) != DATA_LEN || close(d))
		return 3;
	d = open("data", O_RDONLY);
	if (d < 0 || dup2(d, 10) != 10)
		return 3;
	close(d);

	unsigned flags = 0, entries = 8;
	if (!strcmp(mode, "big"))
		flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	else if (!strcmp(mode, "noarray")) {
		flags = IORING_SETUP_NO_SQARRAY;
		entries = 64;
	} else if (!strcmp(mode, "disabled"))
		flags = IORING_SETUP_R_DISABLED;
	else if (!strcmp(mode, "sqpoll"))
		flags = IORING_SETUP_SQPOLL;
	else if (!strcmp(mode, "single") || !strcmp(mode, "single_mt"))
		flags = IORING_SETUP_SINGLE_ISSUER;
	else if (!strcmp(mode, "defer"))
		flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	int noring = !strcmp(mode, "noring");
	if (!noring && setup_ring(entries, flags))
		return 4;
	bufs = mmap(NULL, 12288, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED)
		return 5;
	struct iovec iov[2] = {{bufs, 8192}, {bufs + 8192, 4096}};
	int files[2] = {-1, 10};
	if (!noring &&
	    (syscall(__NR_io_uring_register, RING_FD, IORING_REGISTER_BUFFERS, iov, 2) ||
	     syscall(__NR_io_uring_register, RING_FD, IORING_REGISTER_FILES, files, 2)))
		return 5;
	unsigned rounds = !strcmp(mode, "far") ? 50000 + ROUNDS : ROUNDS;
	if (strcmp(mode, "disabled") && !noring)
		for (unsigned n = 0; n < rounds; n++) {
			const char *why = round_trip(n);
			if (why) {
				fputs(why, stderr);
				return 6;
			}
		}
	if (!strcmp(mode, "single_mt")) {
		pthread_t t;
		if (pthread_create(&t, NULL, idle, NULL))
			return 7;
	}
	if (!strcmp(mode, "inflight")) {
		if (pipe(inflight_pipe) || dup2(inflight_pipe[0], 12) != 12 ||
		    dup2(inflight_pipe[1], 13) != 13)
			return 7;
		close(inflight_pipe[0]);
		close(inflight_pipe[1]);
		inflight_pipe[0] = 12;
		inflight_pipe[1] = 13;
		prep_read(queue(), 12, plain_buf, 1, 0, 77);
		plain_buf[0] = 0;
		if (enter(1, 0) != 1)
			return 7;
	}
	if (!noring) {
		/* A submission thread moves the SQ head after it submits. */
		while (!strcmp(mode, "sqpoll") &&
		       __atomic_load_n(r.sq_head, __ATOMIC_ACQUIRE) != *r.sq_tail)
			sched_yield();
		before_sq = *r.sq_head;
		before_cq = *r.cq_head;
		if (fdinfo(before_info, sizeof(before_info)))
			return 8;
	}

	printf("sq_head %u\n", before_sq);
	printf("ring %p\n", r.sq_ring);
	printf("pid %d\n", getpid());
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigfillset(&waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	const char *why = check(mode);
	return verdict(argv[1], why ? why : "PASS\n");
}
