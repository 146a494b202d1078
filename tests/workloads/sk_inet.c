/*
 * sk_inet: a process holding TCP and UDP sockets over IPv4 and IPv6, each
 * with known state and options:
 *
 *   fd 10  TCP listening on 127.0.0.1:PORT0 (backlog 9), SO_REUSEADDR,
 *          SO_KEEPALIVE with TCP_KEEPIDLE 77, TCP_KEEPINTVL 11,
 *          TCP_KEEPCNT 5, TCP_NODELAY, SO_LINGER on for 3 s, IP_TOS 0x10
 *   fd 11  TCP listening on [::1]:PORT1, IPV6_V6ONLY, SO_REUSEPORT,
 *          SO_RCVBUF 100000, SO_MARK 7, SO_PRIORITY 3, bound to device lo
 *   fd 12  TCP listening on [::]:PORT2 (v4 and v6), O_NONBLOCK, a classic
 *          filter attached (accept all), SO_RCVLOWAT 2, SO_SNDTIMEO 1.5 s
 *   fd 13  UDP bound to 127.0.0.1:PORT3, SO_BROADCAST, SO_TIMESTAMP,
 *          SO_PEEK_OFF 0 (on)
 *   fd 14  UDP bound to 127.0.0.1 (any port) and connected to fd 13's
 *          address, IP_TTL 33, IP_PKTINFO
 *   fd 15  UDP over IPv6 bound to [::1]:PORT4, IPV6_RECVPKTINFO
 *   fd 16  a TCP socket neither bound nor connected
 *   fd 17  a UDP socket neither bound nor connected, shut down (read)
 *   fd 18  TCP bound to 127.0.0.1:PORT5, not listening
 *
 *   sk_inet OUTFILE [PORT0]
 *
 * Ports are chosen by the kernel unless PORT0 is given (then PORT0 + i).
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * every socket (addresses, states, options; the listeners accept a
 * connection, the UDP sockets exchange datagrams) and writes PASS or
 * FAIL: why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char msg[512];

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

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static int seti(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

static int geti(int fd, int level, int name)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l))
		return -12345;
	return v;
}

static struct sockaddr_in in4(const char *a, int port)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, a, &s.sin_addr);
	return s;
}

static struct sockaddr_in6 in6(const char *a, int port)
{
	struct sockaddr_in6 s = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	inet_pton(AF_INET6, a, &s.sin6_addr);
	return s;
}

static int port_of(int fd)
{
	struct sockaddr_in6 s;
	socklen_t l = sizeof(s);
	if (getsockname(fd, (struct sockaddr *)&s, &l))
		return -1;
	return ntohs(s.sin6_port); /* same offset in sockaddr_in */
}

static int ports[6];

#define FAIL(...) do { snprintf(msg, sizeof(msg), "FAIL: " __VA_ARGS__); return msg; } while (0)

static int accepts(int lfd, struct sockaddr *to, socklen_t tl)
{
	int c = socket(to->sa_family, SOCK_STREAM, 0);
	if (c < 0 || connect(c, to, tl))
		return 0;
	int fl = fcntl(lfd, F_GETFL);
	fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK);
	int a = accept(lfd, NULL, NULL);
	fcntl(lfd, F_SETFL, fl);
	if (a < 0)
		return 0;
	char b[4] = { 0 };
	int ok = write(a, "hey", 3) == 3 && read(c, b, 3) == 3 && !strcmp(b, "hey");
	close(a);
	close(c);
	return ok;
}

static const char *check(void)
{
	struct linger lg;
	socklen_t ll = sizeof(lg);
	/* fd 10 */
	if (port_of(10) != ports[0] || !geti(10, SOL_SOCKET, SO_ACCEPTCONN))
		FAIL("fd 10's address or listening\n");
	if (geti(10, SOL_SOCKET, SO_REUSEADDR) != 1 || geti(10, SOL_SOCKET, SO_KEEPALIVE) != 1 ||
	    geti(10, IPPROTO_TCP, TCP_KEEPIDLE) != 77 || geti(10, IPPROTO_TCP, TCP_KEEPINTVL) != 11 ||
	    geti(10, IPPROTO_TCP, TCP_KEEPCNT) != 5 || geti(10, IPPROTO_TCP, TCP_NODELAY) != 1)
		FAIL("fd 10's keepalive or nodelay options\n");
	if (getsockopt(10, SOL_SOCKET, SO_LINGER, &lg, &ll) || !lg.l_onoff || lg.l_linger != 3)
		FAIL("fd 10's linger\n");
	if (geti(10, IPPROTO_IP, IP_TOS) != 0x10)
		FAIL("fd 10's IP_TOS is %#x\n", geti(10, IPPROTO_IP, IP_TOS));
	struct sockaddr_in a4 = in4("127.0.0.1", ports[0]);
	if (!accepts(10, (struct sockaddr *)&a4, sizeof(a4)))
		FAIL("fd 10 does not accept\n");
	/* fd 11 */
	if (port_of(11) != ports[1] || geti(11, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
		FAIL("fd 11's address or IPV6_V6ONLY\n");
	if (geti(11, SOL_SOCKET, SO_REUSEPORT) != 1 || geti(11, SOL_SOCKET, SO_REUSEADDR) != 0)
		FAIL("fd 11's reuse options\n");
	if (geti(11, SOL_SOCKET, SO_RCVBUF) != 200000 || geti(11, SOL_SOCKET, SO_MARK) != 7 ||
	    geti(11, SOL_SOCKET, SO_PRIORITY) != 3)
		FAIL("fd 11's buffer, mark or priority\n");
	char dev[16] = { 0 };
	socklen_t dl = sizeof(dev);
	if (getsockopt(11, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) || strcmp(dev, "lo"))
		FAIL("fd 11's device is '%s'\n", dev);
	struct sockaddr_in6 a6 = in6("::1", ports[1]);
	if (!accepts(11, (struct sockaddr *)&a6, sizeof(a6)))
		FAIL("fd 11 does not accept\n");
	/* fd 12 */
	if (port_of(12) != ports[2] || geti(12, IPPROTO_IPV6, IPV6_V6ONLY) != 0 ||
	    !(fcntl(12, F_GETFL) & O_NONBLOCK))
		FAIL("fd 12's address, IPV6_V6ONLY or flags\n");
	if (geti(12, SOL_SOCKET, SO_RCVLOWAT) != 2)
		FAIL("fd 12's SO_RCVLOWAT\n");
	struct timeval tv;
	socklen_t tl = sizeof(tv);
	if (getsockopt(12, SOL_SOCKET, SO_SNDTIMEO, &tv, &tl) || tv.tv_sec != 1 ||
	    tv.tv_usec < 499000 || tv.tv_usec > 501000)
		FAIL("fd 12's SO_SNDTIMEO\n");
	socklen_t fl = 0;
	if (getsockopt(12, SOL_SOCKET, SO_ATTACH_FILTER, NULL, &fl) || fl != 1)
		FAIL("fd 12's filter has %u instructions\n", fl);
	a4 = in4("127.0.0.1", ports[2]);
	if (!accepts(12, (struct sockaddr *)&a4, sizeof(a4)))
		FAIL("fd 12 does not accept over IPv4\n");
	/* fd 13, 14: a datagram from 14 to 13, and back. */
	if (port_of(13) != ports[3] || geti(13, SOL_SOCKET, SO_BROADCAST) != 1 ||
	    geti(13, SOL_SOCKET, SO_TIMESTAMP) != 1 || geti(13, SOL_SOCKET, SO_PEEK_OFF) != 0)
		FAIL("fd 13's address or options\n");
	if (geti(14, IPPROTO_IP, IP_TTL) != 33 || geti(14, IPPROTO_IP, IP_PKTINFO) != 1)
		FAIL("fd 14's IP options\n");
	char b[32] = { 0 };
	struct sockaddr_in from;
	socklen_t froml = sizeof(from);
	if (send(14, "dgram", 5, 0) != 5 ||
	    recvfrom(13, b, sizeof(b), 0, (struct sockaddr *)&from, &froml) != 5 || strcmp(b, "dgram"))
		FAIL("fd 14 to 13\n");
	if (ntohs(from.sin_port) != port_of(14))
		FAIL("fd 14's port\n");
	if (sendto(13, "back", 4, 0, (struct sockaddr *)&from, froml) != 4 || recv(14, b, 4, 0) != 4 ||
	    memcmp(b, "back", 4))
		FAIL("fd 13 to 14\n");
	/* fd 15 */
	if (port_of(15) != ports[4] || geti(15, IPPROTO_IPV6, IPV6_RECVPKTINFO) != 1)
		FAIL("fd 15's address or options\n");
	a6 = in6("::1", ports[4]);
	int u = socket(AF_INET6, SOCK_DGRAM, 0);
	if (sendto(u, "six", 3, 0, (struct sockaddr *)&a6, sizeof(a6)) != 3 || recv(15, b, 3, 0) != 3 ||
	    memcmp(b, "six", 3))
		FAIL("fd 15 does not receive\n");
	close(u);
	/* fd 16, 17, 18 */
	if (geti(16, SOL_SOCKET, SO_TYPE) != SOCK_STREAM || port_of(16) != 0)
		FAIL("fd 16\n");
	if (geti(17, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM || port_of(17) != 0)
		FAIL("fd 17\n");
	if (port_of(18) != ports[5] || geti(18, SOL_SOCKET, SO_ACCEPTCONN) != 0)
		FAIL("fd 18\n");
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int base = argc > 2 ? atoi(argv[2]) : 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	int p = base;
#define NEXT (base ? p++ : 0)

	/* 10 */
	struct sockaddr_in a4 = in4("127.0.0.1", NEXT);
	struct linger lg = { .l_onoff = 1, .l_linger = 3 };
	if (place(socket(AF_INET, SOCK_STREAM, 0), 10) < 0 || seti(10, SOL_SOCKET, SO_REUSEADDR, 1) ||
	    seti(10, SOL_SOCKET, SO_KEEPALIVE, 1) || seti(10, IPPROTO_TCP, TCP_KEEPIDLE, 77) ||
	    seti(10, IPPROTO_TCP, TCP_KEEPINTVL, 11) || seti(10, IPPROTO_TCP, TCP_KEEPCNT, 5) ||
	    seti(10, IPPROTO_TCP, TCP_NODELAY, 1) ||
	    setsockopt(10, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) || seti(10, IPPROTO_IP, IP_TOS, 0x10) ||
	    bind(10, (struct sockaddr *)&a4, sizeof(a4)) || listen(10, 9))
		return 4;
	/* 11 */
	struct sockaddr_in6 a6 = in6("::1", NEXT);
	if (place(socket(AF_INET6, SOCK_STREAM, 0), 11) < 0 || seti(11, IPPROTO_IPV6, IPV6_V6ONLY, 1) ||
	    seti(11, SOL_SOCKET, SO_REUSEPORT, 1) || seti(11, SOL_SOCKET, SO_RCVBUF, 100000) ||
	    seti(11, SOL_SOCKET, SO_MARK, 7) || seti(11, SOL_SOCKET, SO_PRIORITY, 3) ||
	    setsockopt(11, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) ||
	    bind(11, (struct sockaddr *)&a6, sizeof(a6)) || listen(11, 4))
		return 4;
	/* 12 */
	a6 = in6("::", NEXT);
	struct sock_filter code[] = { { BPF_RET | BPF_K, 0, 0, 0xffffffff } };
	struct sock_fprog prog = { .len = 1, .filter = code };
	struct timeval tv = { .tv_sec = 1, .tv_usec = 500000 };
	if (place(socket(AF_INET6, SOCK_STREAM, 0), 12) < 0 || seti(12, IPPROTO_IPV6, IPV6_V6ONLY, 0) ||
	    setsockopt(12, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ||
	    seti(12, SOL_SOCKET, SO_RCVLOWAT, 2) ||
	    setsockopt(12, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    bind(12, (struct sockaddr *)&a6, sizeof(a6)) || listen(12, 2) ||
	    fcntl(12, F_SETFL, O_NONBLOCK))
		return 4;
	/* 13 */
	a4 = in4("127.0.0.1", NEXT);
	if (place(socket(AF_INET, SOCK_DGRAM, 0), 13) < 0 || seti(13, SOL_SOCKET, SO_BROADCAST, 1) ||
	    seti(13, SOL_SOCKET, SO_TIMESTAMP, 1) || seti(13, SOL_SOCKET, SO_PEEK_OFF, 0) ||
	    bind(13, (struct sockaddr *)&a4, sizeof(a4)))
		return 4;
	/* 14 */
	struct sockaddr_in any = in4("127.0.0.1", 0);
	if (place(socket(AF_INET, SOCK_DGRAM, 0), 14) < 0 || seti(14, IPPROTO_IP, IP_TTL, 33) ||
	    seti(14, IPPROTO_IP, IP_PKTINFO, 1) || bind(14, (struct sockaddr *)&any, sizeof(any)))
		return 4;
	a4.sin_port = htons(port_of(13));
	if (connect(14, (struct sockaddr *)&a4, sizeof(a4)))
		return 4;
	/* 15 */
	a6 = in6("::1", NEXT);
	if (place(socket(AF_INET6, SOCK_DGRAM, 0), 15) < 0 ||
	    seti(15, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) || bind(15, (struct sockaddr *)&a6, sizeof(a6)))
		return 4;
	/* 16, 17 */
	if (place(socket(AF_INET, SOCK_STREAM, 0), 16) < 0 ||
	    place(socket(AF_INET, SOCK_DGRAM, 0), 17) < 0)
		return 4;
	shutdown(17, SHUT_RD);
	/* 18 */
	a4 = in4("127.0.0.1", NEXT);
	if (place(socket(AF_INET, SOCK_STREAM, 0), 18) < 0 || bind(18, (struct sockaddr *)&a4, sizeof(a4)))
		return 4;
	int fds[6] = { 10, 11, 12, 13, 15, 18 };
	for (int i = 0; i < 6; i++)
		ports[i] = port_of(fds[i]);

	printf("pid %d\n", getpid());
	for (int i = 0; i < 6; i++)
		printf("port%d %d\n", i, ports[i]);
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
