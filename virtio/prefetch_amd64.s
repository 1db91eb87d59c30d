#include "textflag.h"

// func prefetchW(addrs []uintptr)
TEXT ·prefetchW(SB), NOSPLIT, $0-24
	MOVQ addrs_base+0(FP), SI
	MOVQ addrs_len+8(FP), CX
	TESTQ CX, CX
	JZ done
loop:
	MOVQ (SI), AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08 // PREFETCHW (AX)
	ADDQ $8, SI
	DECQ CX
	JNZ loop
done:
	RET


// func extFeatures() uint32: CPUID leaf 0x80000001's ECX
TEXT ·extFeatures(SB), NOSPLIT, $0-4
	MOVL $0x80000001, AX
	XORL CX, CX
	CPUID
	MOVL CX, ret+0(FP)
	RET
