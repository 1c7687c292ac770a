"""CPU per url() call, three forms (process_time loops, median of 7 rounds of 20,000); no server.
Run from the checkout: PYTHONPATH=. python bench/url_cpu.py"""
import statistics
import time
import django
from django.conf import settings
settings.configure(AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                   AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                   AWS_S3_BUCKET_NAME="bench-bucket", AWS_S3_ENDPOINT_URL="http://127.0.0.1:9",
                   USE_TZ=True)
django.setup()
from django_s3_storage.storage import S3Storage
forms = {
    "presigned": S3Storage(),
    "plain": S3Storage(aws_s3_bucket_auth=False),
    "public": S3Storage(aws_s3_public_url="https://cdn.example.com/static/"),
}
name = "media/uploads/2026/12/photo of the day_1234.jpg"
N = 20000
for label, st in forms.items():
    st.url(name)
    runs = []
    for _ in range(7):
        t = time.process_time()
        for _ in range(N):
            st.url(name)
        runs.append((time.process_time() - t) / N * 1e6)
    print(f"{label:10s} {statistics.median(runs):6.2f} us/call (min {min(runs):.2f})")
