from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0002_completion_model_version'),
    ]

    operations = [
        migrations.AddField(
            model_name='comparison',
            name='purpose',
            field=models.CharField(choices=[('training', 'Training'), ('evaluation', 'Evaluation')], db_index=True, default='training', max_length=10),
        ),
    ]
