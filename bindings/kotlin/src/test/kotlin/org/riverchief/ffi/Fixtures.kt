package org.riverchief.ffi

import java.awt.image.BufferedImage
import java.awt.image.DataBufferInt
import java.io.File
import java.security.MessageDigest
import java.util.Random
import javax.imageio.IIOImage
import javax.imageio.ImageIO
import javax.imageio.ImageWriteParam
import kotlin.math.asin
import kotlin.math.cos
import kotlin.math.sin
import kotlin.math.sqrt

/** A segment's line as the server serves it, walked by distance. */
class Line(val points: List<DoubleArray>) {
    private val cumulative: DoubleArray = DoubleArray(points.size).also {
        for (i in 1 until points.size) it[i] = it[i - 1] + distanceM(points[i - 1], points[i])
    }

    val lengthM get() = cumulative.last()

    /** The position `s` metres from the start (clamped to the line), as [lon, lat]. */
    fun at(s: Double): DoubleArray {
        val d = s.coerceIn(0.0, lengthM)
        var i = 1
        while (i < points.size - 1 && cumulative[i] < d) i++
        val span = cumulative[i] - cumulative[i - 1]
        val f = if (span == 0.0) 0.0 else (d - cumulative[i - 1]) / span
        val a = points[i - 1]
        val b = points[i]
        return doubleArrayOf(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
    }

    companion object {
        /** Great-circle distance in metres between two [lon, lat] positions. */
        fun distanceM(a: DoubleArray, b: DoubleArray): Double {
            val r = 6_371_008.8
            val la1 = Math.toRadians(a[1])
            val la2 = Math.toRadians(b[1])
            val dLat = la2 - la1
            val dLon = Math.toRadians(b[0] - a[0])
            val h = sin(dLat / 2) * sin(dLat / 2) + cos(la1) * cos(la2) * sin(dLon / 2) * sin(dLon / 2)
            return 2 * r * asin(sqrt(h.coerceAtMost(1.0)))
        }

        /** From a GeoJSON LineString's `coordinates`. */
        fun fromGeoJson(coordinates: List<Any?>): Line = Line(coordinates.map { p ->
            val xy = p as List<*>
            doubleArrayOf((xy[0] as Number).toDouble(), (xy[1] as Number).toDouble())
        })
    }
}

object Photos {
    /**
     * A phone-sized photo: 4000×3000, a gradient under enough sensor-like noise that a high quality
     * JPEG of it weighs what a phone's does (4–9 MB; about 6 MB is aimed at). Deterministic.
     */
    fun phoneJpeg(file: File): File {
        var amplitude = 20.0
        repeat(6) {
            val bytes = encode(noisy(4000, 3000, amplitude, 16), 0.92f)
            val size = bytes.size
            if (size in 5_000_000..8_000_000 || it == 5) {
                file.writeBytes(bytes)
                return file
            }
            amplitude *= if (size < 5_000_000) 1.4 else 0.7
        }
        return file
    }

    /** A smaller noisy JPEG (not shrunk at capture when its longest edge is within the options'). */
    fun jpeg(file: File, width: Int, height: Int, seed: Long): File {
        file.writeBytes(encode(noisy(width, height, 20.0, seed), 0.92f))
        return file
    }

    private fun noisy(w: Int, h: Int, amplitude: Double, seed: Long): BufferedImage {
        val img = BufferedImage(w, h, BufferedImage.TYPE_INT_RGB)
        val px = (img.raster.dataBuffer as DataBufferInt).data
        val rng = Random(seed)
        for (y in 0 until h) {
            for (x in 0 until w) {
                val n = (rng.nextGaussian() * amplitude).toInt()
                val r = (60 + x * 128 / w + n).coerceIn(0, 255)
                val g = (110 + y * 100 / h + n).coerceIn(0, 255)
                val b = (80 + (x + y) * 60 / (w + h) + n / 2).coerceIn(0, 255)
                px[y * w + x] = (r shl 16) or (g shl 8) or b
            }
        }
        return img
    }

    private fun encode(img: BufferedImage, quality: Float): ByteArray {
        val writer = ImageIO.getImageWritersByFormatName("jpeg").next()
        val param = writer.defaultWriteParam.apply {
            compressionMode = ImageWriteParam.MODE_EXPLICIT
            compressionQuality = quality
        }
        val out = java.io.ByteArrayOutputStream()
        ImageIO.createImageOutputStream(out).use { stream ->
            writer.output = stream
            writer.write(null, IIOImage(img, null, null), param)
        }
        writer.dispose()
        return out.toByteArray()
    }
}

fun sha256Hex(bytes: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
