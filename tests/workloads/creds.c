/*
 * creds: a process that started as root and became uid 1000 with reduced
 * capabilities, each piece of its credentials and limits known and
 * checked from inside.
 *
 *   creds OUTFILE
 *
 * As root: loginuid 1234 (when the kernel has audit), oom_score_adj 123,
 * rlimits (NOFILE 200/1000, CORE 0/4 MiB, STACK 4/16 MiB), SCHED_BATCH,
 * nice 5, personality ADDR_COMPAT_LAYOUT, comm "credsx", the bounding set
 * without CAP_SYS_ADMIN, CAP_MKNOD and CAP_SYS_MODULE, securebits
 * NOROOT|KEEP_CAPS; the verdict file is made and given to uid 1000. Then
 * groups {1001,1002,1003}, gid 1000 and uid 1000 (real, effective,
 * saved, fs), capabilities: permitted {KILL, NET_BIND_SERVICE, CHOWN},
 * effective {KILL, NET_BIND_SERVICE}, inheritable {KILL}, ambient {KILL};
 * dumpable 1, no_new_privs, pdeath signal SIGUSR2 (ignored), child
 * subreaper.
 *
 * Prints "uid 1000", "loginuid N" (or "loginuid none"), "ready", then
 * waits in sigsuspend. On SIGUSR1 it reads every piece back (getresuid,
 * getresgid, setfsuid(-1), getgroups, capget, /proc/self/status,
 * prctl, /proc/self/loginuid, personality, getrlimit, /proc/self/comm,
 * /proc/self/oom_score_adj, sched_getscheduler, getpriority) and writes
 * PASS or the first difference to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UID 1000
#define GID 1000
#define LOGINUID 1234
#define OOM_ADJ 123
#define PERSONA ADDR_COMPAT_LAYOUT
#define SECBITS (SECBIT_NOROOT | SECBIT_KEEP_CAPS)
#define CAPB(c) (1ull << (c))
#define CAP_P (CAPB(CAP_KILL) | CAPB(CAP_NET_BIND_SERVICE) | CAPB(CAP_CHOWN))
#define CAP_E (CAPB(CAP_KILL) | CAPB(CAP_NET_BIND_SERVICE))
#define CAP_I (CAPB(CAP_KILL))
#define CAP_A (CAPB(CAP_KILL))
#define DROPPED (CAPB(CAP_SYS_ADMIN) | CAPB(CAP_MKNOD) | CAPB(CAP_SYS_MODULE))

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static const gid_t groups[] = { 1001, 1002, 1003 };
static const struct {
	int res;
	rlim_t cur, max;
	const char *name;
} limits[] = {
	{ RLIMIT_NOFILE, 200, 1000, "NOFILE" },
	{ RLIMIT_CORE, 0, 4 << 20, "CORE" },
	{ RLIMIT_STACK, 4 << 20, 16 << 20, "STACK" },
};

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

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, text, strlen(text)) == (ssize_t)strlen(text) ? 0 : -1;
	close(fd);
	return r;
}

static int read_file(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t k = read(fd, buf, n - 1);
	close(fd);
	if (k < 0)
		return -1;
	buf[k] = 0;
	return 0;
}

/* A hex field of /proc/self/status. */
static uint64_t status_hex(const char *key)
{
	static char buf[8192];
	if (read_file("/proc/self/status", buf, sizeof(buf)))
		return ~0ull;
	char *p = strstr(buf, key);
	if (!p)
		return ~0ull;
	return strtoull(p + strlen(key), NULL, 16);
}

static int capget3(uint64_t *e, uint64_t *p, uint64_t *i)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return -1;
	*e = d[0].effective | (uint64_t)d[1].effective << 32;
	*p = d[0].permitted | (uint64_t)d[1].permitted << 32;
	*i = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	return 0;
}

static int capset3(uint64_t e, uint64_t p, uint64_t i)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)e, (uint32_t)p, (uint32_t)i },
		{ (uint32_t)(e >> 32), (uint32_t)(p >> 32), (uint32_t)(i >> 32) },
	};
	return syscall(SYS_capset, &h, d);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (geteuid() != 0)
		return 2;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, SIG_IGN);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	/* The verdict file, for uid 1000 to write. */
	int vf = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (vf < 0 || fchown(vf, UID, GID))
		return 3;
	close(vf);

	/* What needs root. */
	char num[32];
	snprintf(num, sizeof(num), "%d", LOGINUID);
	int have_loginuid = write_file("/proc/self/loginuid", num) == 0;
	snprintf(num, sizeof(num), "%d", OOM_ADJ);
	if (write_file("/proc/self/oom_score_adj", num))
		return 3;
	for (unsigned k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
		struct rlimit rl = { limits[k].cur, limits[k].max };
		if (setrlimit(limits[k].res, &rl))
			return 3;
	}
	struct sched_param sp = { 0 };
	if (sched_setscheduler(0, SCHED_BATCH, &sp) || setpriority(PRIO_PROCESS, 0, 5))
		return 3;
	if (personality(PERSONA) < 0)
		return 3;
	prctl(PR_SET_NAME, "credsx", 0, 0, 0);
	for (int c = 0; c < 64; c++)
		if ((DROPPED & CAPB(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
			return 4;
	if (prctl(PR_SET_SECUREBITS, SECBITS, 0, 0, 0))
		return 4;

	/* Becomes uid 1000, keeping some capabilities. */
	if (setgroups(3, groups) || setresgid(GID, GID, GID) || setresuid(UID, UID, UID))
		return 5;
	if (capset3(CAP_E, CAP_P, CAP_I))
		return 6;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0))
		return 6;
	/* After the uid change, which resets these. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		return 7;

	printf("uid %d\n", getuid());
	if (have_loginuid)
		printf("loginuid %d\n", LOGINUID);
	else
		printf("loginuid none\n");
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

	char msg[256];
	uid_t r, e, s;
	getresuid(&r, &e, &s);
	int fsu = setfsuid(-1);
	if (r != UID || e != UID || s != UID || fsu != UID) {
		snprintf(msg, sizeof(msg), "FAIL: uids %d %d %d fs %d\n", r, e, s, fsu);
		return verdict(argv[1], msg);
	}
	gid_t rg, eg, sg;
	getresgid(&rg, &eg, &sg);
	int fsg = setfsgid(-1);
	if (rg != GID || eg != GID || sg != GID || fsg != GID) {
		snprintf(msg, sizeof(msg), "FAIL: gids %d %d %d fs %d\n", rg, eg, sg, fsg);
		return verdict(argv[1], msg);
	}
	gid_t g[16];
	int ng = getgroups(16, g);
	if (ng != 3 || g[0] != groups[0] || g[1] != groups[1] || g[2] != groups[2]) {
		snprintf(msg, sizeof(msg), "FAIL: %d groups\n", ng);
		return verdict(argv[1], msg);
	}
	uint64_t ce = 0, cp = 0, ci = 0;
	if (capget3(&ce, &cp, &ci) || ce != CAP_E || cp != CAP_P || ci != CAP_I) {
		snprintf(msg, sizeof(msg), "FAIL: capabilities eff %#llx prm %#llx inh %#llx\n",
			 (unsigned long long)ce, (unsigned long long)cp, (unsigned long long)ci);
		return verdict(argv[1], msg);
	}
	uint64_t bnd = status_hex("CapBnd:"), amb = status_hex("CapAmb:");
	if (bnd & DROPPED || !(bnd & CAPB(CAP_KILL)) || !(bnd & CAPB(CAP_SETUID))) {
		snprintf(msg, sizeof(msg), "FAIL: bounding set %#llx\n", (unsigned long long)bnd);
		return verdict(argv[1], msg);
	}
	if (amb != CAP_A) {
		snprintf(msg, sizeof(msg), "FAIL: ambient set %#llx\n", (unsigned long long)amb);
		return verdict(argv[1], msg);
	}
	int sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	if (sb != SECBITS) {
		snprintf(msg, sizeof(msg), "FAIL: securebits %#x\n", sb);
		return verdict(argv[1], msg);
	}
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return verdict(argv[1], "FAIL: no_new_privs\n");
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
		return verdict(argv[1], "FAIL: dumpable\n");
	int pd = 0;
	prctl(PR_GET_PDEATHSIG, &pd, 0, 0, 0);
	if (pd != SIGUSR2) {
		snprintf(msg, sizeof(msg), "FAIL: pdeath signal %d\n", pd);
		return verdict(argv[1], msg);
	}
	int sr = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &sr, 0, 0, 0);
	if (sr != 1)
		return verdict(argv[1], "FAIL: child subreaper\n");
	char buf[64];
	if (have_loginuid) {
		if (read_file("/proc/self/loginuid", buf, sizeof(buf)) || atoi(buf) != LOGINUID) {
			snprintf(msg, sizeof(msg), "FAIL: loginuid %s\n", buf);
			return verdict(argv[1], msg);
		}
	}
	int pers = personality(0xffffffff);
	if (pers != PERSONA) {
		snprintf(msg, sizeof(msg), "FAIL: personality %#x\n", pers);
		return verdict(argv[1], msg);
	}
	for (unsigned k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
		struct rlimit rl;
		getrlimit(limits[k].res, &rl);
		if (rl.rlim_cur != limits[k].cur || rl.rlim_max != limits[k].max) {
			snprintf(msg, sizeof(msg), "FAIL: RLIMIT_%s %llu/%llu\n", limits[k].name,
				 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
			return verdict(argv[1], msg);
		}
	}
	if (read_file("/proc/self/comm", buf, sizeof(buf)) || strcmp(buf, "credsx\n"))
		return verdict(argv[1], "FAIL: comm\n");
	if (read_file("/proc/self/oom_score_adj", buf, sizeof(buf)) || atoi(buf) != OOM_ADJ) {
		snprintf(msg, sizeof(msg), "FAIL: oom_score_adj %s\n", buf);
		return verdict(argv[1], msg);
	}
	int pol = sched_getscheduler(0);
	if (pol != SCHED_BATCH) {
		snprintf(msg, sizeof(msg), "FAIL: scheduler policy %d\n", pol);
		return verdict(argv[1], msg);
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	if (nice != 5) {
		snprintf(msg, sizeof(msg), "FAIL: nice %d\n", nice);
		return verdict(argv[1], msg);
	}
	return verdict(argv[1], "PASS\n");
}
