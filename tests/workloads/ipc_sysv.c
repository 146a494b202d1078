/*
 * ipc_sysv: a process of a container with SysV IPC objects of every kind
 * in its IPC namespace, each with known state:
 *
 *   shm A   key 0x52430001, 3 pages + 100 bytes, mode 0640, attached
 *           read-write at `a` and filled with a pattern
 *   shm B   IPC_PRIVATE, 8 pages, mode 0600, owner 1000:1001 (IPC_SET),
 *           pages 0 and 5 written, then detached (the rest holes)
 *   shm C   key 0x52430003, 1 page, mode 0644, attached read-only at `c`
 *   sem     key 0x52430010, 5 semaphores valued 7 0 3 32767 1, mode 0600
 *   msg     key 0x52430020, mode 0620, msg_qbytes 8000, four messages:
 *           type 1 "first", type 2 300 pattern bytes, type 1 "third",
 *           type 5 empty
 *
 * Objects are made and removed first, so that no id is the first of its
 * kind (an id the restore does not keep shows).
 *
 * In mode "rmid", shm A is also marked removed (IPC_RMID) while attached.
 * In mode "qbytes", the queue keeps its default msg_qbytes (which CRIU 4.2
 * restores, as it does not restore a queue's own), and it is not checked.
 *
 *   ipc_sysv OUTFILE [rmid | qbytes]
 *
 * Prints the ids and "ready", waits in sigsuspend for SIGUSR1, then checks
 * every object (ids by key, sizes, modes, owners, contents, that `a` is
 * still an attach of shm A, semaphore values, the messages in order) and
 * writes PASS or FAIL: why to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#define PAGE 4096
#define KEY_A 0x52430001
#define KEY_C 0x52430003
#define KEY_S 0x52430010
#define KEY_Q 0x52430020
#define SIZE_A (3 * PAGE + 100)
#define SIZE_B (8 * PAGE)

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char why[600];

static unsigned char pattern(size_t i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 11) ^ (unsigned)salt);
}

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

#define FAIL(...) do { snprintf(why, sizeof(why), __VA_ARGS__); return -1; } while (0)

static const unsigned short sem_values[5] = { 7, 0, 3, 32767, 1 };

struct m { long type; char text[512]; };

static int id_a, id_b, id_c, id_s, id_q;
static int default_qbytes, rmid;
static char *a, *c;

/* Makes and removes one object of each kind, so that ids move on. */
static void churn(void)
{
	for (int i = 0; i < 3; i++) {
		int s = shmget(IPC_PRIVATE, PAGE, 0600);
		shmctl(s, IPC_RMID, NULL);
		int m = semget(IPC_PRIVATE, 1, 0600);
		semctl(m, 0, IPC_RMID);
		int q = msgget(IPC_PRIVATE, 0600);
		msgctl(q, IPC_RMID, NULL);
	}
}

static int setup(void)
{
	churn();
	id_a = shmget(KEY_A, SIZE_A, IPC_CREAT | IPC_EXCL | 0640);
	if (id_a < 0)
		FAIL("shmget A: %s", strerror(errno));
	a = shmat(id_a, NULL, 0);
	if (a == (void *)-1)
		FAIL("shmat A: %s", strerror(errno));
	for (size_t i = 0; i < SIZE_A; i++)
		a[i] = pattern(i, 1);

	id_b = shmget(IPC_PRIVATE, SIZE_B, IPC_CREAT | 0600);
	if (id_b < 0)
		FAIL("shmget B: %s", strerror(errno));
	char *b = shmat(id_b, NULL, 0);
	if (b == (void *)-1)
		FAIL("shmat B: %s", strerror(errno));
	for (size_t i = 0; i < PAGE; i++) {
		b[i] = pattern(i, 2);
		b[5 * PAGE + i] = pattern(i, 3);
	}
	shmdt(b);
	struct shmid_ds ds;
	if (shmctl(id_b, IPC_STAT, &ds))
		FAIL("IPC_STAT B: %s", strerror(errno));
	ds.shm_perm.uid = 1000;
	ds.shm_perm.gid = 1001;
	if (shmctl(id_b, IPC_SET, &ds))
		FAIL("IPC_SET B: %s", strerror(errno));

	id_c = shmget(KEY_C, PAGE, IPC_CREAT | IPC_EXCL | 0644);
	if (id_c < 0)
		FAIL("shmget C: %s", strerror(errno));
	char *w = shmat(id_c, NULL, 0);
	if (w == (void *)-1)
		FAIL("shmat C: %s", strerror(errno));
	for (size_t i = 0; i < PAGE; i++)
		w[i] = pattern(i, 4);
	shmdt(w);
	c = shmat(id_c, NULL, SHM_RDONLY);
	if (c == (void *)-1)
		FAIL("shmat C read-only: %s", strerror(errno));

	id_s = semget(KEY_S, 5, IPC_CREAT | IPC_EXCL | 0600);
	if (id_s < 0)
		FAIL("semget: %s", strerror(errno));
	union semun su = { .array = (unsigned short *)sem_values };
	if (semctl(id_s, 0, SETALL, su))
		FAIL("SETALL: %s", strerror(errno));

	id_q = msgget(KEY_Q, IPC_CREAT | IPC_EXCL | 0620);
	if (id_q < 0)
		FAIL("msgget: %s", strerror(errno));
	struct msqid_ds qs;
	if (msgctl(id_q, IPC_STAT, &qs))
		FAIL("IPC_STAT queue: %s", strerror(errno));
	if (!default_qbytes)
		qs.msg_qbytes = 8000;
	if (msgctl(id_q, IPC_SET, &qs))
		FAIL("IPC_SET queue: %s", strerror(errno));
	struct m m;
	m.type = 1;
	strcpy(m.text, "first");
	if (msgsnd(id_q, &m, 5, IPC_NOWAIT))
		FAIL("msgsnd 1: %s", strerror(errno));
	m.type = 2;
	for (size_t i = 0; i < 300; i++)
		m.text[i] = pattern(i, 5);
	if (msgsnd(id_q, &m, 300, IPC_NOWAIT))
		FAIL("msgsnd 2: %s", strerror(errno));
	m.type = 1;
	strcpy(m.text, "third");
	if (msgsnd(id_q, &m, 5, IPC_NOWAIT))
		FAIL("msgsnd 3: %s", strerror(errno));
	m.type = 5;
	if (msgsnd(id_q, &m, 0, IPC_NOWAIT))
		FAIL("msgsnd 4: %s", strerror(errno));

	if (rmid && shmctl(id_a, IPC_RMID, NULL))
		FAIL("IPC_RMID A: %s", strerror(errno));
	return 0;
}

static int check_shm(void)
{
	int id = shmget(KEY_A, 0, 0);
	if (!rmid && id != id_a)
		FAIL("shm A's key gives id %d, not %d (%s)", id, id_a, strerror(errno));
	struct shmid_ds ds;
	if (shmctl(id_a, IPC_STAT, &ds))
		FAIL("IPC_STAT A: %s", strerror(errno));
	if (rmid && (id >= 0 || !(ds.shm_perm.mode & SHM_DEST)))
		FAIL("shm A is not removed (mode %o, its key gives %d)", ds.shm_perm.mode, id);
	if (ds.shm_segsz != SIZE_A || (ds.shm_perm.mode & 0777) != 0640)
		FAIL("shm A: size %zu mode %o", (size_t)ds.shm_segsz, ds.shm_perm.mode);
	for (size_t i = 0; i < SIZE_A; i++)
		if ((unsigned char)a[i] != pattern(i, 1))
			FAIL("shm A at %p: byte %zu is %d", (void *)a, i, a[i]);
	/* `a` is an attach of A itself: what it writes, a new attach reads. */
	char *again = shmat(id_a, NULL, 0);
	if (again == (void *)-1)
		FAIL("shmat A again: %s", strerror(errno));
	a[17] = 'x';
	if (again[17] != 'x')
		FAIL("shm A at %p is not an attach of segment %d", (void *)a, id_a);
	if (shmctl(id_a, IPC_STAT, &ds))
		FAIL("IPC_STAT A: %s", strerror(errno));
	if (ds.shm_nattch != 2)
		FAIL("shm A has %lu attaches with a new one, not 2", (unsigned long)ds.shm_nattch);
	shmdt(again);

	if (shmctl(id_b, IPC_STAT, &ds))
		FAIL("IPC_STAT B (id %d): %s", id_b, strerror(errno));
	if (ds.shm_segsz != SIZE_B || (ds.shm_perm.mode & 0777) != 0600 ||
	    ds.shm_perm.uid != 1000 || ds.shm_perm.gid != 1001 || ds.shm_perm.__key != IPC_PRIVATE)
		FAIL("shm B: size %zu mode %o owner %u:%u key %x", (size_t)ds.shm_segsz,
		     ds.shm_perm.mode, ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_perm.__key);
	char *b = shmat(id_b, NULL, SHM_RDONLY);
	if (b == (void *)-1)
		FAIL("shmat B: %s", strerror(errno));
	for (size_t p = 0; p < 8; p++)
		for (size_t i = 0; i < PAGE; i++) {
			unsigned char want = p == 0 ? pattern(i, 2) : p == 5 ? pattern(i, 3) : 0;
			unsigned char got = b[p * PAGE + i];
			if (got != want) {
				shmdt(b);
				FAIL("shm B: page %zu byte %zu is %d, not %d", p, i, got, want);
			}
		}
	shmdt(b);

	if (shmget(KEY_C, 0, 0) != id_c)
		FAIL("shm C's key gives another id than %d", id_c);
	for (size_t i = 0; i < PAGE; i++)
		if ((unsigned char)c[i] != pattern(i, 4))
			FAIL("shm C at %p: byte %zu is %d", (void *)c, i, c[i]);
	/* `c` is read-only, as it was attached. */
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512], want[32];
	int found = 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)c);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, want, strlen(want))) {
			found = 1;
			if (strncmp(line + strcspn(line, " ") + 1, "r--s", 4))
				FAIL("shm C is mapped as %.60s", line);
		}
	if (f)
		fclose(f);
	if (!found)
		FAIL("shm C is not mapped at %p", (void *)c);
	return 0;
}

static int check_sem(void)
{
	int id = semget(KEY_S, 0, 0);
	if (id != id_s)
		FAIL("semaphores' key gives id %d, not %d", id, id_s);
	struct semid_ds ds;
	union semun su = { .buf = &ds };
	if (semctl(id_s, 0, IPC_STAT, su))
		FAIL("IPC_STAT semaphores: %s", strerror(errno));
	if (ds.sem_nsems != 5 || (ds.sem_perm.mode & 0777) != 0600)
		FAIL("semaphores: %lu of them, mode %o", (unsigned long)ds.sem_nsems,
		     ds.sem_perm.mode);
	unsigned short v[5];
	su.array = v;
	if (semctl(id_s, 0, GETALL, su))
		FAIL("GETALL: %s", strerror(errno));
	for (int i = 0; i < 5; i++)
		if (v[i] != sem_values[i])
			FAIL("semaphore %d is %u, not %u", i, v[i], sem_values[i]);
	struct sembuf op = { .sem_num = 0, .sem_op = -7, .sem_flg = IPC_NOWAIT };
	if (semop(id_s, &op, 1))
		FAIL("semop -7 on semaphore 0: %s", strerror(errno));
	return 0;
}

static int check_msg(void)
{
	int id = msgget(KEY_Q, 0);
	if (id != id_q)
		FAIL("queue's key gives id %d, not %d", id, id_q);
	struct msqid_ds ds;
	if (msgctl(id_q, IPC_STAT, &ds))
		FAIL("IPC_STAT queue: %s", strerror(errno));
	if (ds.msg_qnum != 4 || (!default_qbytes && ds.msg_qbytes != 8000) ||
	    (ds.msg_perm.mode & 0777) != 0620)
		FAIL("queue: %lu messages, qbytes %lu, mode %o", (unsigned long)ds.msg_qnum,
		     (unsigned long)ds.msg_qbytes, ds.msg_perm.mode);
	struct m m;
	ssize_t n = msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 5 || m.type != 1 || memcmp(m.text, "first", 5))
		FAIL("message 1: %zd bytes of type %ld", n, m.type);
	n = msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 300 || m.type != 2)
		FAIL("message 2: %zd bytes of type %ld", n, m.type);
	for (size_t i = 0; i < 300; i++)
		if ((unsigned char)m.text[i] != pattern(i, 5))
			FAIL("message 2: byte %zu", i);
	n = msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 5 || m.type != 1 || memcmp(m.text, "third", 5))
		FAIL("message 3: %zd bytes of type %ld", n, m.type);
	n = msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 0 || m.type != 5)
		FAIL("message 4: %zd bytes of type %ld", n, m.type);
	n = msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n >= 0 || errno != ENOMSG)
		FAIL("a fifth message: %zd bytes", n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	rmid = argc > 2 && !strcmp(argv[2], "rmid");
	default_qbytes = argc > 2 && !strcmp(argv[2], "qbytes");
	signal(SIGUSR1, on_usr1);
	sigset_t usr1, old;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	if (setup()) {
		char m[700];
		snprintf(m, sizeof(m), "FAIL: set-up: %s\n", why);
		return verdict(argv[1], m);
	}
	printf("ids shm %d %d %d sem %d msg %d at %p %p\nready\n", id_a, id_b, id_c, id_s,
	       id_q, (void *)a, (void *)c);
	fflush(stdout);
	while (!stop)
		sigsuspend(&old);
	if (check_shm() || check_sem() || check_msg()) {
		char m[700];
		snprintf(m, sizeof(m), "FAIL: %s\n", why);
		return verdict(argv[1], m);
	}
	return verdict(argv[1], "PASS\n");
}
