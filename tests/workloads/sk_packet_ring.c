/*
 * sk_packet_ring: packet sockets with rings (zdtm's packet_sock_mmap):
 *
 *   fd 10  a raw packet socket with an RX and a TX ring (one 4096-byte
 *          block of four 1024-byte frames each), both mapped shared,
 *          read-write (two pages)
 *   fd 11  a raw packet socket with RX and TX rings of the same geometry,
 *          not mapped
 *
 *   sk_packet_ring OUTFILE [closed]
 *
 * "closed" closes fd 10 once its rings are mapped (only the mapping
 * holds the socket). Prints facts, "ready", waits in sigsuspend for
 * SIGUSR1, then checks that the rings are mapped where they were, from
 * fd 10's socket (/proc/self/maps), two pages, the first RX frame owned
 * by the kernel and the TX ring writable; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

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

#define PAGE 4096
static unsigned char *rings;
static struct stat sk_st;
static char msg[256];
static int closed;

static int ring_of(int fd, int which)
{
	struct tpacket_req r = {
		.tp_block_size = PAGE, .tp_block_nr = 1, .tp_frame_size = 1024, .tp_frame_nr = 4};
	return setsockopt(fd, SOL_PACKET, which, &r, sizeof(r));
}

static const char *check(void)
{
	/* The socket now (a restored one is another inode). */
	if (!closed && fstat(10, &sk_st))
		return "FAIL: fd 10 is gone\n";
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int found = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		unsigned int maj, min;
		unsigned long long ino;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s %*s %x:%x %llu", &s, &e, perms, &maj, &min, &ino) != 6)
			continue;
		if (s != (unsigned long)rings)
			continue;
		found = 1;
		if (e - s != 2 * PAGE || strcmp(perms, "rw-s") ||
		    (!closed && (makedev(maj, min) != sk_st.st_dev || ino != sk_st.st_ino))) {
			snprintf(msg, sizeof(msg),
				 "FAIL: the rings at %lx are %lu bytes %s of inode %llu, not of fd 10's %lu\n",
				 s, e - s, perms, ino, (unsigned long)sk_st.st_ino);
			fclose(f);
			return msg;
		}
	}
	if (f)
		fclose(f);
	if (!found)
		return "FAIL: the rings are not mapped\n";
	struct tpacket_hdr *h = (struct tpacket_hdr *)rings;
	if (h->tp_status != TP_STATUS_KERNEL)
		return "FAIL: the first RX frame is not the kernel's\n";
	rings[PAGE + 100] = 0x5a;
	if (rings[PAGE + 100] != 0x5a)
		return "FAIL: the TX ring is not writable\n";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	closed = argc > 2 && !strcmp(argv[2], "closed");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	int a = socket(AF_PACKET, SOCK_RAW, 0), b = socket(AF_PACKET, SOCK_RAW, 0);
	if (a < 0 || b < 0 || dup2(a, 10) != 10 || dup2(b, 11) != 11)
		return 3;
	close(a);
	close(b);
	if (ring_of(10, PACKET_RX_RING) || ring_of(10, PACKET_TX_RING) || ring_of(11, PACKET_RX_RING) ||
	    ring_of(11, PACKET_TX_RING))
		return 4;
	rings = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	if (rings == MAP_FAILED || fstat(10, &sk_st))
		return 4;
	if (closed)
		close(10);
	printf("pid %d\n", getpid());
	printf("rings %p\n", (void *)rings);
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	const char *why = check();
	return verdict(argv[1], why ? why : "PASS\n");
}
