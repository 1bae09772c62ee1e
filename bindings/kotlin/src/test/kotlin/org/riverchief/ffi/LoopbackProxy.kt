package org.riverchief.ffi

import java.io.IOException
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicLong
import kotlin.math.max

/**
 * A TCP proxy on 127.0.0.1 between the core and the server: the patroller's one bar of signal.
 *
 * - [down]: no signal. The listening socket is closed and every open connection cut, so a
 *   connection attempt is refused at once (what a phone without a network sees), not left hanging.
 * - [up]: the listening socket is opened again on the same port.
 * - [throttle]: bytes per second in each direction, shared by all connections (0 = as fast as
 *   loopback goes). Takes effect within one chunk (a twentieth of a second of traffic).
 *
 * Each connection is two pump threads; [bytesUp] counts what reached the server, [bytesDown] what
 * reached the core.
 */
class LoopbackProxy(private val targetPort: Int) : AutoCloseable {
    private val loopback: InetAddress = InetAddress.getByName("127.0.0.1")
    private val lock = Any()
    private var listener: ServerSocket? = null
    private val connections = ConcurrentHashMap.newKeySet<Socket>()

    @Volatile private var rate: Long = 0
    private val upBucket = Bucket()
    private val downBucket = Bucket()

    val bytesUp = AtomicLong()
    val bytesDown = AtomicLong()
    val accepted = AtomicLong()

    /** The port, the same for the proxy's whole life. */
    val port: Int

    val url get() = "http://127.0.0.1:$port"

    init {
        val socket = newListener(0)
        port = socket.localPort
        listener = socket
        startAccepting(socket)
    }

    fun throttle(bytesPerSecond: Long) {
        require(bytesPerSecond >= 0)
        rate = bytesPerSecond
    }

    fun unthrottled() = throttle(0)

    val isUp get() = synchronized(lock) { listener != null }

    fun down() {
        synchronized(lock) {
            listener?.close()
            listener = null
        }
        for (c in connections) closeQuietly(c)
        connections.clear()
    }

    fun up() {
        synchronized(lock) {
            if (listener != null) return
            // The port was ours a moment ago; the OS may take a little while to let it go again.
            var last: IOException? = null
            repeat(50) {
                try {
                    val socket = newListener(port)
                    listener = socket
                    startAccepting(socket)
                    return
                } catch (e: IOException) {
                    last = e
                    Thread.sleep(100)
                }
            }
            throw IllegalStateException("could not listen on 127.0.0.1:$port again", last)
        }
    }

    override fun close() = down()

    /** Waits (at most [timeoutMs]) until no byte has passed either way for [quietMs]. */
    fun awaitQuiet(quietMs: Long, timeoutMs: Long) {
        val end = System.nanoTime() + timeoutMs * 1_000_000
        var last = bytesUp.get() + bytesDown.get()
        var since = System.nanoTime()
        while (System.nanoTime() < end) {
            Thread.sleep(50)
            val now = bytesUp.get() + bytesDown.get()
            if (now != last) {
                last = now
                since = System.nanoTime()
            } else if (System.nanoTime() - since >= quietMs * 1_000_000) {
                return
            }
        }
        throw IllegalStateException("the link did not go quiet for $quietMs ms within $timeoutMs ms")
    }

    private fun newListener(port: Int): ServerSocket = ServerSocket().apply {
        reuseAddress = true
        // Small kernel buffers on the proxy's side keep "sent" close to "arrived" under a throttle.
        receiveBufferSize = 32 * 1024
        bind(InetSocketAddress(loopback, port), 50)
    }

    private fun startAccepting(socket: ServerSocket) {
        Thread({
            while (!socket.isClosed) {
                val client = try {
                    socket.accept()
                } catch (_: IOException) {
                    break
                }
                accepted.incrementAndGet()
                handle(client)
            }
        }, "proxy-accept-$port").apply { isDaemon = true }.start()
    }

    private fun handle(client: Socket) {
        val server = try {
            Socket().apply {
                connect(InetSocketAddress(loopback, targetPort), 5_000)
                sendBufferSize = 32 * 1024
            }
        } catch (_: IOException) {
            closeQuietly(client)
            return
        }
        client.tcpNoDelay = true
        server.tcpNoDelay = true
        connections.add(client)
        connections.add(server)
        // Gone down between accept and here: cut it like the others.
        if (!isUp) {
            closeQuietly(client)
            closeQuietly(server)
            return
        }
        pump(client, server, upBucket, bytesUp, "up")
        pump(server, client, downBucket, bytesDown, "down")
    }

    private fun pump(from: Socket, to: Socket, bucket: Bucket, counter: AtomicLong, dir: String) {
        Thread({
            val buf = ByteArray(64 * 1024)
            try {
                val input = from.getInputStream()
                val output = to.getOutputStream()
                while (true) {
                    val r = rate
                    val chunk = if (r > 0) max(512L, minOf(r / 20, buf.size.toLong())).toInt() else buf.size
                    val n = input.read(buf, 0, chunk)
                    if (n < 0) break
                    bucket.pass(n, r)
                    output.write(buf, 0, n)
                    output.flush()
                    counter.addAndGet(n.toLong())
                }
            } catch (_: IOException) {
                // Cut: by the other side, by the other pump, or by down().
            } finally {
                // HTTP needs no half-closed connections: the end of either direction ends both
                // (a core that gives up mid-body leaves the server with the bytes that arrived).
                closeQuietly(from)
                closeQuietly(to)
                connections.remove(from)
                connections.remove(to)
            }
        }, "proxy-$dir-$port").apply { isDaemon = true }.start()
    }

    private fun closeQuietly(s: Socket) {
        try { s.close() } catch (_: IOException) {}
    }

    /** A token bucket without tokens: the next instant a byte may pass. */
    private class Bucket {
        private var nextFree = 0L

        fun pass(n: Int, bytesPerSecond: Long) {
            if (bytesPerSecond <= 0) return
            val wait: Long
            synchronized(this) {
                val now = System.nanoTime()
                val start = max(now, nextFree)
                nextFree = start + n * 1_000_000_000L / bytesPerSecond
                wait = nextFree - now
            }
            if (wait > 0) Thread.sleep(wait / 1_000_000, (wait % 1_000_000).toInt())
        }
    }
}
