/*
 * netns: a process in a network namespace of its own, which it sets up:
 *   lo up, 10.77.0.1/24, 10.82.0.1/32 and fd77::1/64 on it; routes 10.78.0.0/24 via
 *   10.77.0.2 and fd78::/64 on lo (metric 7); a rule "from 10.77.0.5 lookup
 *   100"; iptables (legacy) rules dropping 10.79.0.0/24 in INPUT and
 *   accepting NEW,ESTABLISHED tcp (the connection has a conntrack entry,
 *   marked 119 by a CONNMARK rule deleted right after it is made); an
 *   nftables table "inet rcriu_t" dropping 10.81.0.1; sysctls
 *   net.unix.max_dgram_qlen 77, net.ipv4.conf.default.arp_ignore 1 and
 *   net.ipv4.conf.lo.accept_local 1;
 *   fd 10 a TCP listener on 10.77.0.1:7777, fds 11/12 a connection to
 *   it: 11 sent "before-dump", which 12 has not read.
 *
 *   netns OUTFILE [veth=NAME] [kind=KIND] [pair]
 *     veth=NAME   the test gives the namespace veth NAME (its peer
 *                 outside) with 10.80.0.2/24 once this is ready; the
 *                 check looks for them
 *     pair        also a veth pair inside: vpa (10.90.0.1/24), vpb
 *                 (10.90.0.2/24), both up
 *     kind=KIND   also makes a link "rc0" of KIND (bridge, "vxlan id 42
 *                 dstport 4789", tun...)
 *
 * Prints "ready", waits in sigsuspend for SIGUSR1, then checks all of it
 * from inside (the tools it runs work in its namespace), sends and reads
 * more on the connection, makes a new one to the listener (the network
 * is not locked), and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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

static int sh(const char *cmd)
{
	int r = system(cmd);
	return r == 0 ? 0 : -1;
}

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static int put_ctl(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, v, strlen(v)) == (ssize_t)strlen(v) ? 0 : -1;
	close(fd);
	return r;
}

static int ctl_is(const char *path, const char *v)
{
	char buf[64] = { 0 };
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && strncmp(buf, v, strlen(v)) == 0;
}

static int take(int fd, const char *s)
{
	char buf[64] = { 0 };
	size_t n = strlen(s), done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return 0;
		ssize_t r = recv(fd, buf + done, n - done, 0);
		if (r <= 0)
			return 0;
		done += r;
	}
	return memcmp(buf, s, n) == 0;
}

static struct sockaddr_in srv_addr(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7777) };
	inet_pton(AF_INET, "10.77.0.1", &a.sin_addr);
	return a;
}

static const char *setup_net(const char *kind, int pair)
{
	static char cmd[256];
	if (unshare(CLONE_NEWNET))
		return "unshare(CLONE_NEWNET)";
	if (sh("ip link set lo up"))
		return "lo up";
	if (sh("ip addr add 10.77.0.1/24 dev lo"))
		return "ip addr add";
	if (sh("ip addr add 10.82.0.1/32 dev lo"))
		return "ip addr add 10.82.0.1";
	if (sh("ip -6 addr add fd77::1/64 dev lo nodad"))
		return "ip -6 addr add";
	if (sh("ip route add 10.78.0.0/24 via 10.77.0.2 dev lo"))
		return "ip route add";
	if (sh("ip -6 route add fd78::/64 dev lo metric 7"))
		return "ip -6 route add";
	if (sh("ip rule add from 10.77.0.5 lookup 100"))
		return "ip rule add";
	if (sh("iptables-legacy -w -A INPUT -s 10.79.0.0/24 -j DROP"))
		return "iptables-legacy -A";
	if (sh("iptables-legacy -w -A INPUT -p tcp -m state --state NEW,ESTABLISHED -j ACCEPT"))
		return "iptables-legacy -A (state)";
	if (sh("iptables-legacy -w -t mangle -A OUTPUT -p tcp --dport 7777 -j CONNMARK --set-mark 119"))
		return "iptables-legacy -A (connmark)";
	if (sh("nft add table inet rcriu_t && "
	       "nft 'add chain inet rcriu_t c { type filter hook input priority 0; }' && "
	       "nft add rule inet rcriu_t c ip saddr 10.81.0.1 drop"))
		return "nft add";
	if (put_ctl("/proc/sys/net/unix/max_dgram_qlen", "77\n"))
		return "max_dgram_qlen";
	if (put_ctl("/proc/sys/net/ipv4/conf/default/arp_ignore", "1\n"))
		return "default arp_ignore";
	if (put_ctl("/proc/sys/net/ipv4/conf/lo/accept_local", "1\n"))
		return "lo accept_local";
	if (pair && sh("ip link add vpa type veth peer name vpb && ip link set vpa up && "
		       "ip link set vpb up && ip addr add 10.90.0.1/24 dev vpa && "
		       "ip addr add 10.90.0.2/24 dev vpb"))
		return "the veth pair";
	if (kind) {
		if (!strcmp(kind, "tun"))
			snprintf(cmd, sizeof(cmd), "ip tuntap add rc0 mode tun");
		else
			snprintf(cmd, sizeof(cmd), "ip link add rc0 type %s", kind);
		if (sh(cmd))
			return "ip link add rc0";
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *out = argv[1], *veth = NULL, *kind = NULL;
	int pair = 0;
	for (int i = 2; i < argc; i++) {
		if (!strncmp(argv[i], "veth=", 5))
			veth = argv[i] + 5;
		else if (!strncmp(argv[i], "kind=", 5))
			kind = argv[i] + 5;
		else if (!strcmp(argv[i], "pair"))
			pair = 1;
	}
	int null = open("/dev/null", O_RDWR);
	const char *why = setup_net(kind, pair);
	if (why) {
		fprintf(stderr, "netns: %s\n", why);
		return verdict(out, "FAIL: setting up the namespace\n");
	}
	struct sockaddr_in a = srv_addr();
	int one = 1;
	int l = place(socket(AF_INET, SOCK_STREAM, 0), 10);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 8))
		return verdict(out, "FAIL: listening\n");
	int c = place(socket(AF_INET, SOCK_STREAM, 0), 11);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
		return verdict(out, "FAIL: connecting\n");
	int s = place(accept(l, NULL, NULL), 12);
	if (s < 0 || send(c, "before-dump", 11, 0) != 11)
		return verdict(out, "FAIL: accepting\n");
	/* The connection's conntrack entry is marked 119; no packet is
	   marked after this, so only the entry restored has the mark. */
	if (sh("iptables-legacy -w -t mangle -D OUTPUT -p tcp --dport 7777 -j CONNMARK --set-mark 119"))
		return verdict(out, "FAIL: deleting the connmark rule\n");

	signal(SIGUSR1, on_usr1);
	sigset_t m, old;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigprocmask(SIG_BLOCK, &m, &old);
	printf("ready\n");
	fflush(stdout);
	dup2(null, 1);
	dup2(null, 2);
	while (!stop)
		sigsuspend(&old);

	static char vcheck[256];
	struct {
		const char *what, *cmd;
	} checks[] = {
		{ "the address on lo", "ip -4 addr show dev lo | grep -q 'inet 10.77.0.1/24'" },
		{ "the second address on lo", "ip -4 addr show dev lo | grep -q 'inet 10.82.0.1/32'" },
		{ "the ipv6 address on lo", "ip -6 addr show dev lo | grep -q 'inet6 fd77::1/64'" },
		{ "the route", "ip route show | grep -q '^10.78.0.0/24 via 10.77.0.2 dev lo'" },
		{ "the ipv6 route", "ip -6 route show | grep -q '^fd78::/64 dev lo metric 7'" },
		{ "the rule", "ip rule show | grep -q 'from 10.77.0.5 lookup 100'" },
		{ "the iptables rule", "iptables-legacy -w -S INPUT | grep -q -- '-A INPUT -s 10.79.0.0/24 -j DROP'" },
		{ "the nftables rule", "nft list table inet rcriu_t | grep -q 'ip saddr 10.81.0.1 drop'" },
		{ "lo up", "ip link show dev lo | grep -q 'LOOPBACK,UP'" },
		{ NULL, NULL },
	};
	/* The conntrack entry with its mark: the one restored (a window
	   probe after the restore makes one, unmarked, were it missing). */
	if (sh("grep -q 'ESTABLISHED .*dport=7777 .*mark=119' /proc/net/nf_conntrack"))
		return verdict(out, "FAIL: the conntrack entry of the connection is not there\n");
	for (int i = 0; checks[i].what; i++)
		if (sh(checks[i].cmd)) {
			static char msg[128];
			snprintf(msg, sizeof(msg), "FAIL: %s is not there\n", checks[i].what);
			return verdict(out, msg);
		}
	if (veth) {
		snprintf(vcheck, sizeof(vcheck),
			 "ip -4 addr show dev %s | grep -q 'inet 10.80.0.2/24'", veth);
		if (sh(vcheck))
			return verdict(out, "FAIL: the veth or its address is not there\n");
	}
	if (pair && sh("ip -4 addr show dev vpa | grep -q 'inet 10.90.0.1/24' && "
		       "ip -4 addr show dev vpb | grep -q 'inet 10.90.0.2/24' && "
		       "ip link show dev vpa | grep -q 'vpa@vpb:.*UP'"))
		return verdict(out, "FAIL: the veth pair inside is not there\n");
	if (!ctl_is("/proc/sys/net/unix/max_dgram_qlen", "77"))
		return verdict(out, "FAIL: sysctl net.unix.max_dgram_qlen is not 77\n");
	if (!ctl_is("/proc/sys/net/ipv4/conf/default/arp_ignore", "1"))
		return verdict(out, "FAIL: sysctl net.ipv4.conf.default.arp_ignore is not 1\n");
	if (!ctl_is("/proc/sys/net/ipv4/conf/lo/accept_local", "1"))
		return verdict(out, "FAIL: sysctl net.ipv4.conf.lo.accept_local is not 1\n");
	if (!take(s, "before-dump"))
		return verdict(out, "FAIL: the connection lost what was sent before the dump\n");
	if (send(s, "after-restore", 13, 0) != 13 || !take(c, "after-restore"))
		return verdict(out, "FAIL: the connection does not carry on\n");
	int n = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(n, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (n < 0 || connect(n, (struct sockaddr *)&a, sizeof(a)))
		return verdict(out, "FAIL: a new connection to the listener (is the network still locked?)\n");
	int n2 = accept(l, NULL, NULL);
	if (n2 < 0 || send(n, "new", 3, 0) != 3 || !take(n2, "new"))
		return verdict(out, "FAIL: the new connection\n");
	return verdict(out, "PASS\n");
}
