// libsrtp3 calling conventions implemented over libsrtp2 (Debian ships only libsrtp2).
// libsrtp3 protects from an input buffer into a separate output buffer with size_t lengths;
// libsrtp2 works in place with int lengths. Each overload copies in -> out, checks the output
// capacity, then calls the in-place libsrtp2 function.
#ifndef MS_LIBSRTP3_OVER_LIBSRTP2_H
#define MS_LIBSRTP3_OVER_LIBSRTP2_H

#include <srtp2/srtp.h>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>

// Error codes libsrtp3 added after srtp_err_status_pkt_idx_adv (27).
constexpr srtp_err_status_t srtp_err_status_buffer_small = static_cast<srtp_err_status_t>(28);
constexpr srtp_err_status_t srtp_err_status_cryptex_err  = static_cast<srtp_err_status_t>(29);

namespace ms_srtp3_compat
{
	using InPlaceFn = srtp_err_status_t (*)(srtp_t, void*, int*);

	inline srtp_err_status_t Run(
	  InPlaceFn fn, srtp_t ctx, const uint8_t* in, size_t inLen, uint8_t* out, size_t* outLen, size_t growth)
	{
		if (inLen > static_cast<size_t>(INT_MAX) - growth)
			return srtp_err_status_bad_param;
		if (*outLen < inLen + growth)
			return srtp_err_status_buffer_small;
		if (in != out)
			std::memmove(out, in, inLen);

		int len = static_cast<int>(inLen);
		const srtp_err_status_t err = fn(ctx, out, &len);

		if (err == srtp_err_status_ok)
			*outLen = static_cast<size_t>(len);

		return err;
	}
} // namespace ms_srtp3_compat

inline srtp_err_status_t srtp_protect(
  srtp_t ctx, const uint8_t* rtp, size_t rtpLen, uint8_t* srtp, size_t* srtpLen, size_t /*mkiIndex*/)
{
	return ms_srtp3_compat::Run(
	  static_cast<ms_srtp3_compat::InPlaceFn>(&srtp_protect), ctx, rtp, rtpLen, srtp, srtpLen, SRTP_MAX_TRAILER_LEN);
}

inline srtp_err_status_t srtp_unprotect(
  srtp_t ctx, const uint8_t* srtp, size_t srtpLen, uint8_t* rtp, size_t* rtpLen)
{
	return ms_srtp3_compat::Run(
	  static_cast<ms_srtp3_compat::InPlaceFn>(&srtp_unprotect), ctx, srtp, srtpLen, rtp, rtpLen, 0);
}

inline srtp_err_status_t srtp_protect_rtcp(
  srtp_t ctx, const uint8_t* rtcp, size_t rtcpLen, uint8_t* srtcp, size_t* srtcpLen, size_t /*mkiIndex*/)
{
	return ms_srtp3_compat::Run(
	  static_cast<ms_srtp3_compat::InPlaceFn>(&srtp_protect_rtcp),
	  ctx,
	  rtcp,
	  rtcpLen,
	  srtcp,
	  srtcpLen,
	  SRTP_MAX_TRAILER_LEN + 4); // + SRTCP index word
}

inline srtp_err_status_t srtp_unprotect_rtcp(
  srtp_t ctx, const uint8_t* srtcp, size_t srtcpLen, uint8_t* rtcp, size_t* rtcpLen)
{
	return ms_srtp3_compat::Run(
	  static_cast<ms_srtp3_compat::InPlaceFn>(&srtp_unprotect_rtcp), ctx, srtcp, srtcpLen, rtcp, rtcpLen, 0);
}

inline srtp_err_status_t srtp_stream_remove(srtp_t session, uint32_t ssrc)
{
	return srtp_remove_stream(session, ssrc);
}

#endif
