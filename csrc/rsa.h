/* rsa: SigningKey, an RSA private key loaded once, for CloudFront's signed URLs
 * (RSA-SHA1, PKCS #1 v1.5). Needs the GIL. */
#ifndef S3_RSA_H
#define S3_RSA_H

#include "module.h"

extern PyType_Spec s3_signing_key_spec;

#endif
