// An independent check of scripts/bench.py: the same pipelined write load through
// Apache ZooKeeper's own Java client (its async API), not through zkpy's code.
//
//   java -cp /usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:... \
//        scripts/IndependentLoad.java HOST:PORT set|create|multi CONNS DEPTH SECONDS WARMUP
//
// CONNS ZooKeeper handles each keep DEPTH requests in flight: setData of 100 bytes on
// 100 nodes picked at random (set), a multi of two such setData (multi), or sequential
// creates of 100 bytes under one parent (create). After WARMUP unrecorded seconds it
// counts the replies of SECONDS and prints one line: ops/s, p50 and p99 latency in ms,
// errors, and every reply of the run with the warm-up (total_ops: for CPU per op).
// Every reply's result code is checked.

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public class IndependentLoad {
    static final byte[] VALUE = new byte[100];
    static volatile boolean running = true;
    static volatile boolean recording = false;
    static final AtomicLong done = new AtomicLong();
    static final AtomicLong all = new AtomicLong();
    static final AtomicLong errors = new AtomicLong();
    static final int SAMPLES = 1 << 20;
    static final long[] latencies = new long[SAMPLES];
    static final AtomicLong sampled = new AtomicLong();

    static ZooKeeper connect(String hosts) throws Exception {
        CountDownLatch up = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 30000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                up.countDown();
            }
        });
        up.await();
        return zk;
    }

    static void finished(int rc, long started) {
        if (rc != 0) {
            errors.incrementAndGet();
        }
        if (running) {
            all.incrementAndGet();
        }
        if (recording) {
            done.incrementAndGet();
            long i = sampled.getAndIncrement();
            if (i < SAMPLES) {
                latencies[(int) i] = System.nanoTime() - started;
            }
        }
    }

    static void next(ZooKeeper zk, String kind, String base) {
        if (!running) {
            return;
        }
        long started = System.nanoTime();
        if (kind.equals("set")) {
            String path = base + "/n" + ThreadLocalRandom.current().nextInt(100);
            zk.setData(path, VALUE, -1, (AsyncCallback.StatCallback) (rc, p, ctx, stat) -> {
                finished(rc, started);
                next(zk, kind, base);
            }, null);
        } else if (kind.equals("multi")) {
            ThreadLocalRandom rnd = ThreadLocalRandom.current();
            List<Op> ops = List.of(Op.setData(base + "/n" + rnd.nextInt(100), VALUE, -1),
                                   Op.setData(base + "/n" + rnd.nextInt(100), VALUE, -1));
            zk.multi(ops, (AsyncCallback.MultiCallback) (rc, p, ctx, results) -> {
                finished(rc, started);
                next(zk, kind, base);
            }, null);
        } else {
            zk.create(base + "/c-", VALUE, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL,
                (AsyncCallback.StringCallback) (rc, p, ctx, name) -> {
                    finished(rc, started);
                    next(zk, kind, base);
                }, null);
        }
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        String kind = args[1];
        int conns = Integer.parseInt(args[2]);
        int depth = Integer.parseInt(args[3]);
        double seconds = Double.parseDouble(args[4]);
        double warmup = Double.parseDouble(args[5]);
        ZooKeeper admin = connect(hosts);
        String base = "/indep-" + System.nanoTime();
        admin.create(base, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        if (!kind.equals("create")) {
            for (int i = 0; i < 100; i++) {
                admin.create(base + "/n" + i, VALUE, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            }
        }
        ZooKeeper[] zks = new ZooKeeper[conns];
        for (int c = 0; c < conns; c++) {
            zks[c] = connect(hosts);
        }
        for (ZooKeeper zk : zks) {
            for (int d = 0; d < depth; d++) {
                next(zk, kind, base);
            }
        }
        Thread.sleep((long) (warmup * 1000));
        recording = true;
        long t0 = System.nanoTime();
        Thread.sleep((long) (seconds * 1000));
        recording = false;
        long elapsed = System.nanoTime() - t0;
        running = false;
        long ops = done.get();
        long total = all.get();
        int n = (int) Math.min(sampled.get(), SAMPLES);
        long[] lat = Arrays.copyOf(latencies, n);
        Arrays.sort(lat);
        double p50 = n > 0 ? lat[n / 2] / 1e6 : 0;
        double p99 = n > 0 ? lat[Math.min(n - 1, (int) (n * 0.99))] / 1e6 : 0;
        Thread.sleep(500);  // the requests in flight are answered
        for (ZooKeeper zk : zks) {
            zk.close();
        }
        try {
            admin.delete(base, -1);
        } catch (KeeperException.NotEmptyException e) {
            // children stay: the servers are thrown away after the run
        }
        admin.close();
        System.out.printf("%s ops_per_s=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d total_ops=%d%n",
            kind, ops / (elapsed / 1e9), p50, p99, errors.get(), total);
    }
}
